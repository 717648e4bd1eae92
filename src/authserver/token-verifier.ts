import { createLocalJWKSet, type JWK, type JWTVerifyGetKey, jwtVerify } from "jose";
import { reasonForJoseError } from "../authn/jwt.js";
import { oauthIdentity, scopesFromClaims } from "../authn/oauth-identity.js";
import { tokenHash } from "../authn/token-cache.js";
import type { CredentialVerifier, VerifyResult } from "../authn/verifier.js";
import type { Identity } from "../core/identity.js";

/** What the verifier asks about a token's login, each time its short liveness cache runs out. */
export interface TokenLiveness {
  /** Is the grant (the refresh-token family) still there? Reuse detection and RFC 7009 revocation delete it. */
  grantAlive(grantId: string): Promise<boolean>;
  /** For tokens from `login.apiKey`: the key's current scopes, or undefined when it is revoked, expired or gone. */
  keyScopes?(keyId: string): Promise<string[] | undefined>;
}

/** Options of {@link createOwnTokenVerifier}. */
export interface OwnTokenVerifierOptions {
  issuer: string;
  /** The gateway's resources: a token's `aud` must be one of them (RFC 8707, MCP "Token Validation"). */
  resources: string[];
  /** The public signing keys (refreshed by the caller on rotation). */
  jwks(): JWK[];
  liveness: TokenLiveness;
  /** How long a liveness answer is reused. Default 1000 ms (revocation visible within a second). */
  livenessTtlMs?: number;
  now?: () => number;
}

// JWS compact serialization (RFC 7515 §7.1).
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** The verifier of the gateway's own tokens; `forResource` narrows it to one endpoint. */
export type OwnTokenVerifier = CredentialVerifier & {
  readonly issuers: readonly string[];
  /**
   * The same verifier (same caches) for one MCP endpoint: a token is accepted only if its `aud`
   * names that endpoint's resource, so a token issued for one upstream is refused at another.
   */
  forResource(resource: string): CredentialVerifier & { readonly issuers: readonly string[] };
};

/**
 * The resource-server check of the access tokens the gateway itself issues (DESIGN.md §9): the
 * signature against the gateway's own keys (no network), then `iss`, `aud` ∈ resources, `exp`,
 * `typ` = at+jwt (RFC 9068 §4), then — from a one-second cache — whether the grant still lives and,
 * for API-key logins, whether the key does: its principal is the key's (`key:<id>`) and its scopes
 * are at most the key's current ones.
 *
 * @example
 * const v = createOwnTokenVerifier({ issuer, resources: [publicUrl], jwks: () => keys, liveness });
 * const r = await v.verify(token);
 */
export function createOwnTokenVerifier(options: OwnTokenVerifierOptions): OwnTokenVerifier {
  const now = options.now ?? Date.now;
  const ttl = options.livenessTtlMs ?? 1000;
  let keysFor: JWK[] | undefined;
  let getKey: JWTVerifyGetKey | undefined;
  // Verified tokens by hash, until their `exp`; bounded (cleared when full, as a burst of new tokens).
  const cache = new Map<
    string,
    { identity: Identity; grantId: string | undefined; exp: number; aud: readonly string[] }
  >();
  const live = new Map<string, { until: number; value: Promise<string[] | boolean | undefined> }>();

  function keys(): JWTVerifyGetKey {
    const current = options.jwks();
    if (current !== keysFor || !getKey) {
      keysFor = current;
      getKey = createLocalJWKSet({ keys: current });
    }
    return getKey;
  }

  function remembered<T extends string[] | boolean | undefined>(
    key: string,
    load: () => Promise<T>,
  ): Promise<T> {
    const t = now();
    const hit = live.get(key);
    if (hit && hit.until > t) return hit.value as Promise<T>;
    if (live.size > 10_000) live.clear();
    const value = load();
    live.set(key, { until: t + ttl, value });
    value.catch(() => live.delete(key));
    return value;
  }

  async function check(identity: Identity, grantId: string | undefined): Promise<VerifyResult> {
    if (!grantId || !(await remembered(`g:${grantId}`, () => options.liveness.grantAlive(grantId)))) {
      return { ok: false, reason: "revoked" };
    }
    if (identity.principal.startsWith("key:")) {
      const keyId = identity.subject;
      const scopes = options.liveness.keyScopes
        ? await remembered(`k:${keyId}`, () => options.liveness.keyScopes!(keyId))
        : undefined;
      if (!scopes) return { ok: false, reason: "revoked" };
      return {
        ok: true,
        identity: { ...identity, scopes: identity.scopes.filter((s) => scopes.includes(s)) },
      };
    }
    return { ok: true, identity };
  }

  async function verifyFresh(
    token: string,
  ): Promise<{ result: VerifyResult; grantId?: string; aud?: readonly string[] }> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, keys(), {
        issuer: options.issuer,
        audience: options.resources,
        algorithms: ["ES256", "EdDSA"],
        typ: "at+jwt",
        requiredClaims: ["exp", "sub", "iat"],
        currentDate: new Date(now()),
      }));
    } catch (err) {
      return { result: { ok: false, reason: reasonForJoseError(err) } };
    }
    const sub = payload.sub as string;
    const clientId = typeof payload.client_id === "string" ? payload.client_id : undefined;
    const scopes = scopesFromClaims(payload);
    const gid = typeof payload.gid === "string" ? payload.gid : undefined;
    let identity: Identity;
    if (sub.startsWith("key:")) {
      // login.apiKey: the person proved possession of this key, so they act as it (DESIGN.md §9): the
      // key's principal and kind. A scope denial is then a tool error, not a step-up challenge (no new
      // authorization can exceed the key's scopes), and the stored-key watcher ends open streams when
      // the key is revoked.
      const keyId = sub.slice(4);
      identity = { principal: sub, kind: "api_key", subject: keyId, scopes, displayPrefix: `mcpg_${keyId}` };
      if (clientId) identity.clientId = clientId;
      identity.expiresAt = payload.exp as number;
    } else {
      identity = oauthIdentity({
        issuer: options.issuer,
        subject: sub.replace(/^idp:/, ""),
        scopes,
        clientId,
        expiresAt: payload.exp as number,
      });
    }
    const aud = typeof payload.aud === "string" ? [payload.aud] : ((payload.aud as string[]) ?? []);
    return gid === undefined
      ? { result: { ok: true, identity }, aud }
      : { result: { ok: true, identity }, grantId: gid, aud };
  }

  /** Verify for the endpoint `resource` (undefined: any of the gateway's resources). */
  async function verify(token: string, resource: string | undefined): Promise<VerifyResult> {
    if (typeof token !== "string" || token.length > 8192) return { ok: false, reason: "malformed" };
    const hash = tokenHash(token);
    let entry = cache.get(hash);
    if (!entry || entry.exp * 1000 <= now()) {
      const { result, grantId, aud } = await verifyFresh(token);
      if (!result.ok) return result;
      if (cache.size >= 10_000) cache.clear();
      entry = { identity: result.identity, grantId, exp: result.identity.expiresAt ?? 0, aud: aud ?? [] };
      cache.set(hash, entry);
    }
    if (resource !== undefined && !entry.aud.includes(resource))
      return { ok: false, reason: "wrong_audience" };
    return check(entry.identity, entry.grantId);
  }

  const issuers = Object.freeze([options.issuer]);
  const accepts = (token: string) => JWT_SHAPE.test(token);
  return {
    kind: "oauth2",
    issuers,
    accepts,
    verify: (token) => verify(token, undefined),
    forResource: (resource) => ({
      kind: "oauth2",
      issuers,
      accepts,
      verify: (token) => verify(token, resource),
    }),
  };
}
