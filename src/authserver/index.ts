import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { JWK } from "jose";
import Provider, { type ProviderContext } from "oidc-provider";
import type { CredentialVerifier } from "../authn/verifier.js";
import type { AuditEvent } from "../core/audit-event.js";
import type { Guard, StateStore } from "../core/contracts.js";
import { McpGateError } from "../core/errors.js";
import type { KeyStore } from "../stores/key-store.js";
import { keyStatus } from "../stores/key-store.js";
import type { OAuthRecordStore } from "../stores/oauth-records.js";
import { signingKeySeal } from "../stores/signing-key-seal.js";
import type { SigningKeyStore } from "../stores/signing-keys.js";
import { CLIENT_MODEL, extendClientsOnUse } from "./client-expiry.js";
import { createRegistrationLimiter } from "./client-policy.js";
import { sendOAuthError } from "./http-util.js";
import { createInteractions } from "./interactions.js";
import { providerConfiguration } from "./provider-config.js";
import { EXPIRE_UNLESS_USED } from "./record-adapter.js";
import { sharedSecret } from "./shared-secret.js";
import { createOwnTokenVerifier, type OwnTokenVerifier } from "./token-verifier.js";
import { createUpstreamLogin, type UpstreamLoginOptions } from "./upstream-login.js";

/** Options of {@link createAuthorizationServer}. Durations in seconds/milliseconds as named. */
export interface AuthorizationServerOptions {
  /** The issuer (an origin: https, or http on loopback for development). */
  issuer: string;
  /** The gateway's protected resources; `resource` must be one of them (RFC 8707). */
  resources: string[];
  /** Scopes clients may ask for. */
  scopes: string[];
  login:
    | { apiKey: { verifier: CredentialVerifier; keys: KeyStore } }
    | { oidc: Omit<UpstreamLoginOptions, "redirectUri"> };
  clients?: {
    registration?: boolean;
    metadataDocuments?: boolean;
    allowLoopbackMetadataDocuments?: boolean;
    maxRegistered?: number;
    /**
     * Registrations per source (an IPv4 address, an IPv6 /64) per window, and per IPv6 /48
     * (`ipv6Slash48Limit`, default 4 × `limit`). `state`: where the budgets are kept (the gateway's
     * Redis state store, shared by every instance); default this process.
     */
    registrationRateLimit?: {
      limit: number;
      windowMs: number;
      ipv6Slash48Limit?: number;
      state?: Pick<StateStore, "admit">;
    };
    /** Seconds a registered client is kept without a code or token issued to it. Default 30 days. */
    unusedClientTtlSec?: number;
  };
  accessTtlSec?: number;
  refreshTtlSec?: number;
  consentRememberSec?: number;
  /** Clients, grants, refresh tokens (the key store's database). */
  store: OAuthRecordStore;
  /** Codes, interactions, sessions (Redis with `state.redis`); default `store`. */
  shortLivedStore?: OAuthRecordStore;
  /** The gateway's signing keys (shared by every instance: `openSigningKeyStore`, DESIGN.md §9). */
  signingKeys: Pick<SigningKeyStore, "current">;
  /** The credential-guessing guard (observe/guard.ts): the API-key login page counts wrong keys, and its
   * `sourceOf` (honouring trustProxy) keys the registration rate limit. */
  guard?: Guard;
  /**
   * `MCPGATE_SIGNING_KEY_SECRET`: with it, the cookie and CSRF keys are sealed at rest as the private
   * signing keys are (stores/signing-key-seal.ts); every instance needs the same value.
   */
  signingKeySecret?: string;
  /**
   * Told about a failure of the gateway's own in the provider (a store outage, a secret that does
   * not open): the client got a 500 `server_error`. The provider's own errors are not reported.
   */
  onError?: (err: McpGateError) => void;
  /** How often the signing-key store is asked for rotated keys. Default 30 000 ms. */
  keyRefreshMs?: number;
  /** Set when a TLS-terminating proxy sits in front (X-Forwarded-Proto is then believed). */
  trustProxy?: boolean;
  /**
   * Sign-ins, consents, registrations and token issuance, for the audit trail (docs/observability.md):
   * client ids, account ids and display prefixes only, never a key, a code or a token.
   */
  audit?: (event: Omit<AuditEvent, "time">) => void;
}

/** The running authorization server. */
export interface AuthorizationServer {
  readonly issuer: string;
  /** Answer a request if it is the authorization server's; false otherwise (the gateway goes on). */
  handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  /** Verifies the access tokens this server issues (the gateway's resource-server path). */
  readonly verifier: OwnTokenVerifier;
  close(): Promise<void>;
}

/** An OAuth error answer: status, `error`, `error_description`, extra headers. */
type OAuthRefusal = [status: number, error: string, description: string, headers?: Record<string, string>];

const AS_PATHS = ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"];

/**
 * The registration endpoint in the form oidc-provider's router matches it: any letter case, and at
 * most one trailing slash. Its limits (rate, count) must hold for every spelling the router accepts.
 */
function isRegistrationPath(path: string): boolean {
  const p = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
  return p.toUpperCase() === "/OAUTH/REGISTER";
}

/**
 * The gateway as an OAuth 2.1 authorization server for MCP clients (DESIGN.md §9), built on
 * oidc-provider: RFC 8414 metadata, authorization code + PKCE S256, RFC 8707 resources, RFC 9207
 * `iss`, rotating refresh tokens with reuse detection, RFC 7009 revocation, RFC 7591 registration,
 * Client ID Metadata Documents, and login through an OIDC IdP or an mcpgate API key.
 *
 * @example
 * const as = await createAuthorizationServer({ issuer: "https://mcp.example.com", resources: ["https://mcp.example.com/mcp"],
 *   scopes: ["tools:call"], login: { apiKey: { verifier, keys } }, store: await openOAuthStore("sqlite:./mcpgate.db") });
 * server.on("request", async (req, res) => { if (await as.handle(req, res)) return; … });
 */
export async function createAuthorizationServer(
  options: AuthorizationServerOptions,
): Promise<AuthorizationServer> {
  const issuer = options.issuer.replace(/\/$/, "");
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new McpGateError("ERR_INVALID_OPTION", "authServer.issuer must be a URL");
  }
  if (url.pathname !== "/" || url.search || url.hash) {
    throw new McpGateError("ERR_INVALID_OPTION", "authServer.issuer must be an origin (no path)");
  }
  if (options.resources.length === 0)
    throw new McpGateError("ERR_INVALID_OPTION", "authServer: no resource to issue tokens for");
  const clients = options.clients ?? {};
  const unusedClientTtlSec = clients.unusedClientTtlSec ?? 30 * 86_400;
  if (!Number.isInteger(unusedClientTtlSec) || unusedClientTtlSec <= 0)
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      "authServer.clients.unusedClientTtlSec must be whole seconds > 0",
    );
  const store = options.store;
  // Clients registered before they expired (an upgrade) get the same lease, counted from now.
  for (const model of EXPIRE_UNLESS_USED) await store.expireUnbounded(model, unusedClientTtlSec);
  const keys = options.signingKeys;
  const keySet = await keys.current();
  let publicJwks = keySet.publicJwks;
  const seal = signingKeySeal(options.signingKeySecret);
  const { cookieKeys } = await sharedSecret(
    store,
    "cookie-keys",
    async () => ({ cookieKeys: [randomBytes(32).toString("base64url")] }),
    seal,
  );
  const csrfKey = (cookieKeys as string[])[0]!;

  const apiKey = "apiKey" in options.login ? options.login.apiKey : undefined;
  async function keyScopes(keyId: string): Promise<string[] | undefined> {
    const record = await apiKey?.keys.get(keyId);
    if (!record) return undefined;
    const status = keyStatus(record, Date.now());
    return status === "active" || status === "grace" ? [...record.scopes] : undefined;
  }
  const accountScopes = async (accountId: string) =>
    accountId.startsWith("key:") ? ((await keyScopes(accountId.slice(4))) ?? []) : undefined;
  const accountActive = async (accountId: string) =>
    accountId.startsWith("key:")
      ? (await keyScopes(accountId.slice(4))) !== undefined
      : accountId.startsWith("idp:");

  // The person's login at the IdP is built once (its discovery is cached); the provider is rebuilt
  // when the shared key store's active signing key changes (rotation), from the same stores.
  const upstreamLogin =
    "oidc" in options.login
      ? createUpstreamLogin({ ...options.login.oidc, redirectUri: `${issuer}/oauth/callback` })
      : undefined;
  function build(signingKey: JWK) {
    const provider = new Provider(
      issuer,
      providerConfiguration({
        resources: options.resources,
        scopes: options.scopes,
        accessTtlSec: options.accessTtlSec ?? 3600,
        refreshTtlSec: options.refreshTtlSec ?? 30 * 86_400,
        consentRememberSec: options.consentRememberSec ?? 30 * 86_400,
        registration: clients.registration ?? true,
        metadataDocuments: clients.metadataDocuments ?? true,
        allowLoopbackMetadataDocuments: clients.allowLoopbackMetadataDocuments ?? false,
        unusedClientTtlSec,
        seal,
        store,
        ...(options.shortLivedStore ? { shortLivedStore: options.shortLivedStore } : {}),
        signingKey,
        cookieKeys: cookieKeys as string[],
        accountScopes,
        accountActive,
        interactionUrl: (uid) => `/oauth/interaction/${uid}`,
      }),
    );
    provider.proxy = options.trustProxy === true;
    // oidc-provider reports errors it already answered: ours (McpGateError: a store, a seal, with
    // messages that never hold a secret) are told; its own are not ours to log.
    provider.on("server_error", (_ctx: unknown, err: unknown) => {
      if (err instanceof McpGateError) options.onError?.(err);
    });
    if (options.audit) auditProviderEvents(provider, options.audit, options.guard);
    extendClientsOnUse(provider, store, unusedClientTtlSec);
    provider.use(limitRegistrations);
    const interactions = createInteractions({
      provider,
      // Pending IdP logins live ten minutes: with Redis, beside the codes and interactions.
      store: options.shortLivedStore ?? store,
      csrfKey,
      issuer,
      scopes: options.scopes,
      accountScopes,
      ...(options.guard ? { guard: options.guard } : {}),
      ...(options.audit ? { audit: options.audit } : {}),
      login: apiKey ? { apiKey: apiKey.verifier } : { oidc: upstreamLogin! },
    });
    return { callback: provider.callback(), interactions };
  }
  let live = build(keySet.active.privateJwk);
  let liveKid = keySet.active.kid;

  const rate = clients.registrationRateLimit ?? { limit: 10, windowMs: 60_000 };
  const registrations = createRegistrationLimiter(rate);
  const maxRegistered = clients.maxRegistered ?? 10_000;

  /**
   * The registration limits, as a middleware of the provider: they see the method and path its
   * router matches (Koa's parse: a `#…` or `?…` cut, any letter case, a trailing slash), so no
   * spelling of the request target reaches the registration endpoint around them.
   */
  async function limitRegistrations(ctx: ProviderContext, next: () => Promise<void>): Promise<void> {
    if (ctx.method !== "POST" || !isRegistrationPath(ctx.path ?? "") || !ctx.req || !ctx.res) return next();
    const refusal = await registrationRefusal(ctx.req);
    if (!refusal) return next();
    ctx.respond = false;
    sendOAuthError(ctx.res, ...refusal);
  }

  async function registrationRefusal(req: IncomingMessage): Promise<OAuthRefusal | undefined> {
    const source =
      options.guard?.sourceOf(req.socket.remoteAddress, req.headers) ?? req.socket.remoteAddress ?? "unknown";
    const allowance = await registrations.take(source).catch(() => undefined);
    // The shared budget cannot be read (Redis down): refuse rather than register unbounded.
    if (!allowance) return [503, "temporarily_unavailable", "registration is unavailable, try again later"];
    if (!allowance.ok)
      return [
        429,
        "too_many_requests",
        "too many registrations from this address",
        { "retry-after": String(allowance.retryAfterSec) },
      ];
    // Expired clients (client-expiry.ts) do not count: a cap filled by unused clients empties itself.
    if ((await store.count(CLIENT_MODEL)) >= maxRegistered)
      return [503, "temporarily_unavailable", "the registration limit is reached"];
    return undefined;
  }

  const verifier = createOwnTokenVerifier({
    issuer,
    resources: options.resources,
    jwks: () => publicJwks,
    liveness: {
      grantAlive: async (grantId) => (await store.find("Grant", grantId)) !== undefined,
      keyScopes,
    },
  });
  // Follow the shared key store without blocking a request: new public keys (published ahead, or
  // kept through the overlap) for verification and /oauth/jwks, and a new active key for signing.
  const refresh = setInterval(() => {
    keys.current().then(
      (k) => {
        publicJwks = k.publicJwks;
        if (k.active.kid !== liveKid) {
          live = build(k.active.privateJwk);
          liveKid = k.active.kid;
        }
      },
      () => {},
    );
  }, options.keyRefreshMs ?? 30_000);
  refresh.unref();

  return {
    issuer,
    verifier,
    async handle(req, res) {
      const path = (req.url ?? "/").split("?", 1)[0]!;
      if (AS_PATHS.includes(path)) {
        // RFC 8414 §3 and OIDC Discovery serve the same document.
        if (path !== "/.well-known/openid-configuration") req.url = "/.well-known/openid-configuration";
        await live.callback(req, res);
        return true;
      }
      if (!path.startsWith("/oauth/")) return false;
      if (path === "/oauth/jwks" && (req.method === "GET" || req.method === "HEAD")) {
        // Every published key (active, pending, overlapping), not only the one signing now.
        res
          .writeHead(200, {
            "content-type": "application/jwk-set+json",
            "cache-control": "public, max-age=60",
          })
          .end(req.method === "HEAD" ? undefined : JSON.stringify({ keys: publicJwks }));
        return true;
      }
      if (await live.interactions.handle(req, res)) return true;
      await live.callback(req, res);
      return true;
    },
    async close() {
      clearInterval(refresh);
    },
  };
}

/**
 * Registrations, token issuance and refusals, and revoked grants, as audit events. The provider
 * emits them after it has answered; nothing secret is read (no code, no token, no client secret).
 */
function auditProviderEvents(
  provider: Provider,
  audit: (event: Omit<AuditEvent, "time">) => void,
  guard: Guard | undefined,
): void {
  const ipOf = (ctx: ProviderContext) =>
    (ctx.req ? guard?.sourceOf(ctx.req.socket.remoteAddress, ctx.req.headers) : undefined) ?? ctx.ip;
  const clientOf = (ctx: ProviderContext) =>
    String(ctx.oidc?.client?.clientId ?? ctx.oidc?.params?.client_id ?? "");
  const accountOf = (ctx: ProviderContext) =>
    ctx.oidc?.entities?.Grant?.accountId ??
    ctx.oidc?.entities?.AccessToken?.accountId ??
    ctx.oidc?.entities?.RefreshToken?.accountId ??
    ctx.oidc?.entities?.AuthorizationCode?.accountId;
  const grantType = (ctx: ProviderContext) => String(ctx.oidc?.params?.grant_type ?? "");
  const on = (event: string, fn: (ctx: ProviderContext, extra: unknown) => void) =>
    provider.on(event, (...args: unknown[]) => {
      try {
        fn((args[0] ?? {}) as ProviderContext, args[1]);
      } catch {
        // An audit line must never break the provider's answer.
      }
    });
  on("registration_create.success", (ctx, client) =>
    audit({
      type: "oauth_client_registered",
      ip: ipOf(ctx),
      detail: { client: String((client as { clientId?: string })?.clientId ?? "") },
    }),
  );
  on("grant.success", (ctx) =>
    audit({
      type: "oauth_token_issued",
      actor: accountOf(ctx),
      ip: ipOf(ctx),
      detail: {
        client: clientOf(ctx),
        grant: grantType(ctx),
        resource: String(ctx.oidc?.params?.resource ?? "") || undefined,
      },
    }),
  );
  on("grant.error", (ctx, err) =>
    audit({
      type: "oauth_token_refused",
      ip: ipOf(ctx),
      reason: String((err as { error?: string })?.error ?? "error"),
      detail: { client: clientOf(ctx), grant: grantType(ctx) },
    }),
  );
  on("grant.revoked", (ctx) =>
    audit({
      type: "oauth_grant_revoked",
      actor: accountOf(ctx),
      ip: ipOf(ctx),
      detail: { client: clientOf(ctx) },
    }),
  );
}
