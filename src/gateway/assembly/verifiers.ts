import { createJwtVerifier } from "../../authn/jwt.js";
import { createStaticKeyVerifier } from "../../authn/static-key.js";
import { createApiKeyVerifier } from "../../authn/stored-key.js";
import type { CredentialVerifier } from "../../authn/verifier.js";
import type { GatewayConfig } from "../../config.js";
import { durationMs } from "../../config.js";
import { McpGateError } from "../../core/errors.js";
import { traceKeyStore } from "../../observe/tracing-wrappers.js";
import { openKeyStore } from "../../stores/open-key-store.js";
import { configuredIssuers, jwtVerifierOptions } from "./oauth-options.js";

export interface BuiltVerifiers {
  verifiers: CredentialVerifier[];
  /** The OAuth issuers' verifier (one of `verifiers`): each upstream mount gets its own audience (upstreams.ts). */
  jwt?: CredentialVerifier;
  /** Release stores, timers and connections held by the verifiers. */
  close(): Promise<void>;
}

/**
 * Build the credential verifiers a configuration asks for, in the order the gate tries them:
 * stored API keys (recognised by their `mcpg_` prefix), the static key, then OAuth issuers.
 */
export async function buildVerifiers(
  config: GatewayConfig,
  ctx: { publicUrl: string; env: NodeJS.ProcessEnv; onJwksFetch?: (outcome: "ok" | "error") => void },
): Promise<BuiltVerifiers> {
  const verifiers: CredentialVerifier[] = [];
  let jwt: CredentialVerifier | undefined;
  const closers: Array<() => Promise<void>> = [];

  // Stored API keys (mcpg_…), tried first: their prefix makes them cheap to recognise.
  if (config.auth.apiKeys) {
    // Tracing (docs/tracing.md): a lookup by key id (a verifier cache miss) is a child span.
    const store = traceKeyStore(
      await openKeyStore(config.auth.apiKeys.store),
      config.auth.apiKeys.store.split(":")[0] ?? "keys",
    );
    // Same default as `mcpgate keys` (src/cli/keys.ts): the CLI and the gateway must hash alike.
    const pepperEnv = config.auth.apiKeys.pepperEnv ?? "MCPGATE_KEY_PEPPER";
    const pepper = ctx.env[pepperEnv] || undefined;
    if (config.auth.apiKeys.pepperEnv && !pepper) {
      throw new McpGateError(
        "ERR_CONFIG_INVALID",
        `auth.apiKeys.pepperEnv: environment variable ${pepperEnv} is not set`,
      );
    }
    const verifier = createApiKeyVerifier({
      store,
      ...(pepper ? { pepper } : {}),
      // With state.redis, shared-state.ts wires the revocation feed to invalidate(): a longer cache is safe.
      ...(config.state.redis ? { revocationFeed: true } : {}),
      ...(config.auth.apiKeys.cacheTtl !== undefined
        ? { cacheTtlMs: durationMs(config.auth.apiKeys.cacheTtl) }
        : {}),
    });
    verifiers.push(verifier);
    closers.push(async () => {
      await verifier.close();
      await store.close();
    });
  }

  // Static key: configured explicitly, or on by default when MCP_API_KEY is set (DESIGN.md §7).
  const staticEnv = config.auth.staticKey?.env ?? "MCP_API_KEY";
  const staticKey = ctx.env[staticEnv];
  if (config.auth.staticKey && !staticKey) {
    throw new McpGateError(
      "ERR_CONFIG_INVALID",
      `auth.staticKey: environment variable ${staticEnv} is not set`,
    );
  }
  if (staticKey) {
    verifiers.push(
      createStaticKeyVerifier({
        key: staticKey,
        ...(config.auth.staticKey?.scopes ? { scopes: [...config.auth.staticKey.scopes] } : {}),
      }),
    );
  }

  // OAuth issuers (JWT via JWKS, opaque via introspection), tried last: `auth.jwt` and `auth.issuers`.
  const issuers = configuredIssuers(config);
  if (issuers.length > 0) {
    const hooks = ctx.onJwksFetch ? { onJwksFetch: ctx.onJwksFetch } : {};
    jwt = createJwtVerifier(jwtVerifierOptions(issuers, ctx.publicUrl, hooks));
    verifiers.push(jwt);
  }

  return {
    verifiers,
    ...(jwt ? { jwt } : {}),
    async close() {
      await Promise.all(closers.map((c) => c()));
    },
  };
}
