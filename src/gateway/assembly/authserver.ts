import type { CredentialVerifier } from "../../authn/verifier.js";
import type { AuthorizationServer, AuthorizationServerOptions } from "../../authserver/index.js";
import { durationMs, type GatewayConfig, signingKeyLocation } from "../../config.js";
import type { AuditEvent } from "../../core/audit-event.js";
import type { Guard, StateStore } from "../../core/contracts.js";
import { McpGateError } from "../../core/errors.js";
import type { Logger } from "../../observe/logger.js";
import { type OAuthRecordStore, openOAuthStore } from "../../stores/oauth-records.js";
import { openKeyStore } from "../../stores/open-key-store.js";
import { openSigningKeyStore } from "../../stores/signing-keys.js";

/** The authorization server a configuration asks for (`authServer:`), and what closes it. */
export interface BuiltAuthServer {
  server?: AuthorizationServer;
  close(): Promise<void>;
}

/**
 * Build the gateway's own authorization server from `authServer:` (DESIGN.md §9): its state in the
 * key store's database (SQLite default, PostgreSQL), short-lived records in Redis with `state.redis`,
 * tokens signed with the shared signing keys, login through `login.oidc` or `login.apiKey`.
 *
 * @example const built = await buildAuthServer(config, { publicUrl, resources: [publicUrl], scopes, verifiers });
 */
export async function buildAuthServer(
  config: GatewayConfig,
  ctx: {
    publicUrl: string;
    /** The gateway's protected resources (PRM `resource` of each MCP endpoint). */
    resources: string[];
    /** Scopes clients may ask for when `authServer.scopes` is not set (the policy's). */
    scopes: string[];
    /** The gateway's credential verifiers: login.apiKey checks the entered key with the stored-key one. */
    verifiers: readonly CredentialVerifier[];
    /** The credential-guessing guard (login page lockout, registration rate-limit source). */
    guard?: Guard;
    trustProxy?: boolean;
    /** `MCPGATE_SIGNING_KEY_SECRET`: seals the signing keys and the cookie and CSRF keys at rest. */
    signingKeySecret?: string;
    /** The audit trail (sign-ins, consents, registrations, tokens). */
    audit?: (event: Omit<AuditEvent, "time">) => void;
    /**
     * The gateway's shared state store (`state.redis`), once built: the registration budgets are its
     * rate-limit buckets, shared by every instance (one connection, and its outage reporting).
     */
    sharedState?: () => Pick<StateStore, "admit"> | undefined;
    /** Where the authorization server's own failures are logged. */
    logger?: Logger;
  },
): Promise<BuiltAuthServer> {
  const a = config.authServer;
  if (!a) return { close: async () => {} };
  const location = a.store ?? config.auth.apiKeys?.store ?? "sqlite:./mcpgate.db";
  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => {});
  };
  try {
    let login: AuthorizationServerOptions["login"];
    if (a.login.apiKey) {
      const verifier = ctx.verifiers.find((v) => v.kind === "api_key");
      if (!verifier || !config.auth.apiKeys) {
        throw new McpGateError(
          "ERR_CONFIG_INVALID",
          "authServer.login.apiKey needs auth.apiKeys (the keys people log in with)",
        );
      }
      const keys = await openKeyStore(config.auth.apiKeys.store);
      closers.push(() => keys.close());
      login = { apiKey: { verifier, keys } };
    } else {
      const o = a.login.oidc!;
      login = {
        oidc: {
          issuer: o.issuer,
          clientId: o.clientId,
          ...(o.clientSecret !== undefined ? { clientSecret: o.clientSecret } : {}),
          scopes: [...o.scopes],
          subjectClaim: o.subjectClaim,
          ...(o.allowedEmailDomains ? { allowedEmailDomains: [...o.allowedEmailDomains] } : {}),
          ...(o.allowedClaims
            ? {
                allowedClaims: Object.fromEntries(
                  Object.entries(o.allowedClaims).map(([k, v]) => [k, [...v]]),
                ),
              }
            : {}),
        },
      };
    }
    const store = await openOAuthStore(location);
    closers.push(() => store.close());
    let shortLived: OAuthRecordStore | undefined;
    if (config.state.redis) {
      const { createRedisOAuthStore } = await import("../../stores/oauth-redis.js");
      shortLived = createRedisOAuthStore({
        url: config.state.redis,
        prefix: config.state.prefix,
        // Browser sessions (remembered logins and consents) live for consent.remember: Redis keeps
        // them as long (its default cap, a day, would forget a 30-day consent after one).
        maxTtlSec: Math.max(86_400, Math.floor(durationMs(a.consent.remember) / 1000)),
      });
      await shortLived.init();
      closers.push(() => shortLived!.close());
    }
    // With state.redis, the registration budgets (per address or IPv6 /64, and per IPv6 /48) are
    // shared by every instance: a caller spreading registrations over the instances gets one budget,
    // not one each.
    const shared = ctx.sharedState;
    const registrationState: Pick<StateStore, "admit"> | undefined =
      config.state.redis && shared
        ? {
            admit(input) {
              const state = shared();
              if (!state)
                throw new McpGateError("ERR_STORE_UNAVAILABLE", "the shared state store is not ready");
              return state.admit(input);
            },
          }
        : undefined;
    const signingKeys = await openSigningKeyStore(signingKeyLocation(config), {
      alg: "ES256",
      ...(ctx.signingKeySecret ? { secret: ctx.signingKeySecret } : {}),
    });
    closers.push(() => signingKeys.close());
    // Loaded only when configured: oidc-provider is large and warns on Node 20 at import.
    const { createAuthorizationServer } = await import("../../authserver/index.js");
    const server = await createAuthorizationServer({
      issuer: a.issuer ?? new URL(ctx.publicUrl).origin,
      resources: ctx.resources,
      scopes: a.scopes ? [...a.scopes] : ctx.scopes,
      login,
      clients: {
        registration: a.clients.registration,
        metadataDocuments: a.clients.metadataDocuments,
        allowLoopbackMetadataDocuments: a.clients.allowLoopbackMetadataDocuments,
        maxRegistered: a.clients.maxRegistered,
        registrationRateLimit: {
          limit: a.clients.registrationRateLimit.limit,
          windowMs: durationMs(a.clients.registrationRateLimit.window),
          ...(a.clients.registrationRateLimit.ipv6Slash48Limit !== undefined
            ? { ipv6Slash48Limit: a.clients.registrationRateLimit.ipv6Slash48Limit }
            : {}),
          ...(registrationState ? { state: registrationState } : {}),
        },
        unusedClientTtlSec: Math.floor(durationMs(a.clients.unusedClientTtl) / 1000),
      },
      accessTtlSec: Math.floor(durationMs(a.tokens.accessTtl) / 1000),
      refreshTtlSec: Math.floor(durationMs(a.tokens.refreshTtl) / 1000),
      consentRememberSec: Math.floor(durationMs(a.consent.remember) / 1000),
      store,
      ...(shortLived ? { shortLivedStore: shortLived } : {}),
      signingKeys,
      ...(ctx.guard ? { guard: ctx.guard } : {}),
      ...(ctx.trustProxy ? { trustProxy: true } : {}),
      ...(ctx.audit ? { audit: ctx.audit } : {}),
      ...(ctx.signingKeySecret ? { signingKeySecret: ctx.signingKeySecret } : {}),
      ...(ctx.logger
        ? {
            onError: (err: McpGateError) =>
              ctx.logger!.error(
                { code: err.code, err: err.message },
                "authorization server failed a request",
              ),
          }
        : {}),
    });
    closers.push(() => server.close());
    return { server, close };
  } catch (err) {
    await close();
    throw err;
  }
}
