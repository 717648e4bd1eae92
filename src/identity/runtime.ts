import { discoverIssuer } from "../authn/issuer-discovery.js";
import { McpGateError } from "../core/errors.js";
import type { Identity } from "../core/identity.js";
import { openSigningKeyStore, type SigningAlg, type SigningKeyStore } from "../stores/signing-keys.js";
import { type AssertionSigner, createAssertionSigner } from "./assertion-signer.js";
import { createTokenExchanger, type TokenExchanger } from "./token-exchange.js";
import {
  createUpstreamIdentity,
  defaultAudience,
  type IdentityMode,
  type UpstreamIdentity,
} from "./upstream-identity.js";

/** One upstream's identity settings, already merged (its own `identity` over the top-level one). */
export interface IdentityUpstreamSpec {
  name: string;
  /** Its URL; absent for a stdio upstream. */
  url?: string;
  mode?: IdentityMode;
  header?: string;
  audience?: string;
  tokenEndpoint?: string;
  clientId?: string;
  clientSecret?: string;
  forKeys?: "assertion" | "refuse";
}

/** Options of {@link createIdentityRuntime}: the gateway assembly maps its config onto these. */
export interface IdentityRuntimeOptions {
  upstreams: IdentityUpstreamSpec[];
  /** `iss` of assertions (`identity.issuer`, default the publicUrl origin). */
  issuer: string;
  /** `identity.ttl` in ms. Default 60 000. */
  ttlMs?: number;
  /** An open signing-key store, or where to open one (`identity.keyStore`…). */
  keys?: SigningKeyStore;
  keyStoreLocation?: string;
  alg?: SigningAlg;
  /** Seals the signing keys at rest (`MCPGATE_SIGNING_KEY_SECRET`; stores/signing-key-seal.ts). */
  keySecret?: string;
  /** Open the signing keys even when no upstream uses assertions (e.g. to publish the JWKS for `authServer`). */
  alwaysSign?: boolean;
  /** Timeout of exchanges and of token-endpoint discovery. Default 5000. */
  timeoutMs?: number;
}

/** What the gateway holds: one identity hook per upstream, the signer, the JWKS. */
export interface IdentityRuntime {
  /** The hook of an upstream (mode `none` for an unknown name). */
  hook(upstream: string): UpstreamIdentity;
  /** The signer, when some upstream signs (or `alwaysSign`). */
  readonly signer: AssertionSigner | undefined;
  /** The exchangers created so far, by `upstream` name then issuer: for tests and metrics. */
  readonly exchangers: ReadonlyMap<string, TokenExchanger>;
  /** The RFC 7517 JWK Set for `GET /.well-known/jwks.json`, or undefined when nothing signs. */
  jwks(): Promise<{ keys: Record<string, unknown>[] } | undefined>;
  close(): Promise<void>;
}

// An OAuth principal is "oauth:<issuer>#<sub>"; an issuer URL has no fragment (RFC 8414 §2).
function issuerOf(identity: Identity): string | undefined {
  if (identity.kind !== "oauth2" || !identity.principal.startsWith("oauth:")) return undefined;
  const hash = identity.principal.indexOf("#");
  return hash > 6 ? identity.principal.slice(6, hash) : undefined;
}

/**
 * Build the identity side of the gateway from merged per-upstream settings. Opens the signing keys
 * (creating the first on first start) only when some upstream needs them.
 *
 * @example
 * const rt = await createIdentityRuntime({ issuer: "https://mcp.example.com", keyStoreLocation: "sqlite:./mcpgate.db",
 *   upstreams: [{ name: "notes", url: "http://127.0.0.1:3001/mcp", mode: "assertion" }] });
 * const cred = await rt.hook("notes").credential({ identity, sessionId });
 */
export async function createIdentityRuntime(options: IdentityRuntimeOptions): Promise<IdentityRuntime> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const needsSigner =
    options.alwaysSign === true ||
    options.upstreams.some(
      (u) =>
        u.mode === "assertion" || (u.mode === "token-exchange" && (u.forKeys ?? "assertion") === "assertion"),
    );
  let keys = options.keys;
  const ownsKeys = !keys && needsSigner;
  if (!keys && needsSigner)
    keys = await openSigningKeyStore(options.keyStoreLocation ?? "sqlite:./mcpgate.db", {
      ...(options.alg ? { alg: options.alg } : {}),
      ...(options.keySecret ? { secret: options.keySecret } : {}),
    });
  const signer =
    needsSigner && keys
      ? createAssertionSigner({
          keys,
          issuer: options.issuer,
          ...(options.ttlMs !== undefined ? { ttlMs: options.ttlMs } : {}),
        })
      : undefined;
  const exchangers = new Map<string, TokenExchanger>();
  const hooks = new Map<string, UpstreamIdentity>();

  for (const u of options.upstreams) {
    const mode = u.mode ?? "none";
    let exchanger: ((identity: Identity) => TokenExchanger | undefined) | undefined;
    if (mode === "token-exchange") {
      if (!u.url || !u.clientId || !u.clientSecret)
        throw new McpGateError(
          "ERR_CONFIG_INVALID",
          `upstream ${u.name}: token-exchange needs an HTTP url, identity.clientId and identity.clientSecret`,
        );
      const clientId = u.clientId;
      const clientSecret = u.clientSecret;
      const fixed = u.tokenEndpoint;
      exchanger = (identity) => {
        // One client per (upstream, issuer): with `tokenEndpoint` set, all callers use it.
        const issuer = fixed ? "" : issuerOf(identity);
        if (issuer === undefined) return undefined;
        const key = `${u.name}\u0000${issuer}`;
        let client = exchangers.get(key);
        if (!client) {
          client = createTokenExchanger({
            tokenEndpoint:
              fixed ??
              (async () => {
                const meta = await discoverIssuer(issuer, { timeoutMs });
                if (!meta.token_endpoint)
                  throw new McpGateError("ERR_ISSUER_DISCOVERY", `issuer ${issuer} names no token_endpoint`);
                return meta.token_endpoint;
              }),
            clientId,
            clientSecret,
            timeoutMs,
          });
          exchangers.set(key, client);
        }
        return client;
      };
    }
    hooks.set(
      u.name,
      createUpstreamIdentity({
        upstream: u.name,
        mode,
        audience: u.audience ?? defaultAudience({ name: u.name, url: u.url }),
        ...(u.url !== undefined ? { resource: u.url } : {}),
        ...(u.header !== undefined ? { header: u.header } : {}),
        ...(u.audience !== undefined && mode === "token-exchange" ? { exchangeAudience: u.audience } : {}),
        ...(u.forKeys !== undefined ? { forKeys: u.forKeys } : {}),
        ...(signer ? { signer } : {}),
        ...(exchanger ? { exchanger } : {}),
      }),
    );
  }
  const none = createUpstreamIdentity({ upstream: "", mode: "none", audience: "" });

  return {
    hook: (name) => hooks.get(name) ?? none,
    signer,
    exchangers,
    async jwks() {
      return signer ? ((await signer.jwks()) as { keys: Record<string, unknown>[] }) : undefined;
    },
    async close() {
      if (ownsKeys) await keys?.close();
    },
  };
}
