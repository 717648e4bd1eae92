import { randomUUID } from "node:crypto";
import { importJWK, type JWK, SignJWT } from "jose";

type SigningKeyHandle = Awaited<ReturnType<typeof importJWK>>;

import { IDENTITY_ASSERTION_TYP, type IdentityAssertionClaims } from "../core/assertion.js";
import { McpGateError } from "../core/errors.js";
import type { Identity } from "../core/identity.js";
import type { SigningKeySet, SigningKeyStore } from "../stores/signing-keys.js";
import { createTtlCache, singleFlight } from "./ttl-cache.js";

/** Longest a key set read from the store keeps signing while every refresh fails. */
const MAX_STALE_KEYS_MS = 10 * 60_000;

/** The longest assertion lifetime (DESIGN.md §9: `identity.ttl` at most 1h). */
export const MAX_ASSERTION_TTL_MS = 3_600_000;

/** Options of {@link createAssertionSigner}. */
export interface AssertionSignerOptions {
  /** Where the signing keys live (shared by every instance). */
  keys: SigningKeyStore;
  /** `iss` of every assertion: `identity.issuer`, default the publicUrl origin. */
  issuer: string;
  /** Default lifetime. Default 60 000 (60 s); at most 1 h. */
  ttlMs?: number;
  /** How long the key set read from the store is reused. Default 5000: a rotation elsewhere is seen within 5 s. */
  keyRefreshMs?: number;
  /** Most cached assertions. Default 10 000. */
  maxEntries?: number;
  /** Clock (epoch ms). Default `Date.now`. */
  now?: () => number;
}

/** What to sign for. */
export interface AssertionRequest {
  identity: Identity;
  /** `aud`: the upstream URL or `identity.audience`. */
  audience: string;
  /** `sid`: the MCP session id, when there is one. */
  sessionId?: string;
  /** Lifetime of this assertion (default the signer's); stdio children get the session idle TTL. */
  ttlMs?: number;
  /** Cap `exp` at the caller's own credential expiry (default true): a delegation never outlives its source. */
  capAtCredentialExpiry?: boolean;
  /**
   * Sign a new one, never a cached one: for a stdio child, which keeps its assertion for its whole
   * life (a cached one could be close to its `exp` already, and shared with another child).
   */
  fresh?: boolean;
}

/** Counters, for tests and the bench. */
export interface AssertionSignerStats {
  signed: number;
  cached: number;
}

/** Signs identity assertions, cached per (principal, session, audience, claims) until shortly before `exp`. */
export interface AssertionSigner {
  sign(request: AssertionRequest): Promise<string>;
  /** The public keys to publish at `/.well-known/jwks.json` (RFC 7517 JWK Set). */
  jwks(): Promise<{ keys: JWK[] }>;
  readonly stats: Readonly<AssertionSignerStats>;
}

/**
 * Create an assertion signer. The cache key holds every claim input except the clock, so a caller
 * whose scopes change (a refreshed token) gets a fresh assertion, never a stale one. A cached
 * assertion is reused until a quarter of its lifetime (at most 30 s) remains, so the upstream never
 * receives one about to expire in flight.
 *
 * @example
 * const signer = createAssertionSigner({ keys, issuer: "https://mcp.example.com" });
 * const jwt = await signer.sign({ identity, audience: "http://127.0.0.1:3001/mcp", sessionId });
 */
export function createAssertionSigner(options: AssertionSignerOptions): AssertionSigner {
  const ttlMs = options.ttlMs ?? 60_000;
  checkTtl(ttlMs, "identity.ttl");
  if (typeof options.issuer !== "string" || options.issuer === "")
    throw new McpGateError("ERR_INVALID_OPTION", "assertion signer: issuer is required");
  const now = options.now ?? Date.now;
  const keyRefreshMs = options.keyRefreshMs ?? 5000;
  const cache = createTtlCache<string>(options.maxEntries ?? 10_000, now);
  const once = singleFlight<string>();
  const stats: AssertionSignerStats = { signed: 0, cached: 0 };
  const importedKeys = new Map<string, Promise<SigningKeyHandle>>();
  /** The key set in use: until when it is reused, and when it was last read from the store. */
  let keySet: { set: SigningKeySet; until: number; readAt: number } | undefined;
  let keyLoad: Promise<SigningKeySet> | undefined;

  async function currentKeys(): Promise<SigningKeySet> {
    if (keySet && now() < keySet.until) return keySet.set;
    keyLoad ??= options.keys
      .current()
      .then(
        (set) => {
          keySet = { set, until: now() + keyRefreshMs, readAt: now() };
          return set;
        },
        (err) => {
          // A key store that fails a refresh (a failover, a busy SQLite file) does not stop signing:
          // the last key set read keeps serving, for at most MAX_STALE_KEYS_MS — past that a
          // rotation made elsewhere may have retired its key, and signing fails closed.
          if (!keySet || now() - keySet.readAt > MAX_STALE_KEYS_MS) throw err;
          keySet = { ...keySet, until: now() + keyRefreshMs };
          return keySet.set;
        },
      )
      .finally(() => {
        keyLoad = undefined;
      });
    return keyLoad;
  }

  function importKey(jwk: JWK, kid: string, alg: string): Promise<SigningKeyHandle> {
    let key = importedKeys.get(kid);
    if (!key) {
      key = importJWK(jwk, alg);
      importedKeys.set(kid, key);
      key.catch(() => importedKeys.delete(kid));
    }
    return key;
  }

  async function signNow(req: AssertionRequest, lifetimeMs: number): Promise<{ jwt: string; exp: number }> {
    const { active } = await currentKeys();
    const { identity } = req;
    const iat = Math.floor(now() / 1000);
    let exp = iat + Math.max(1, Math.floor(lifetimeMs / 1000));
    if (req.capAtCredentialExpiry !== false && identity.expiresAt !== undefined)
      exp = Math.min(exp, identity.expiresAt);
    const claims: Omit<IdentityAssertionClaims, "iss" | "aud" | "sub" | "iat" | "exp" | "jti"> = {
      scope: identity.scopes.join(" "),
      client_id: identity.clientId ?? identity.subject,
      kind: identity.kind,
    };
    if (identity.tenant !== undefined) claims.tenant = identity.tenant;
    if (req.sessionId !== undefined) claims.sid = req.sessionId;
    const key = await importKey(active.privateJwk, active.kid, active.alg);
    const jwt = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: active.alg, kid: active.kid, typ: IDENTITY_ASSERTION_TYP })
      .setIssuer(options.issuer)
      .setAudience(req.audience)
      .setSubject(identity.principal)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(randomUUID())
      .sign(key);
    stats.signed++;
    return { jwt, exp: exp * 1000 };
  }

  return {
    async sign(req) {
      const lifetimeMs = req.ttlMs ?? ttlMs;
      if (req.fresh) return (await signNow(req, lifetimeMs)).jwt;
      const id = req.identity;
      const cacheKey = JSON.stringify([
        id.principal,
        req.sessionId ?? null,
        req.audience,
        id.scopes,
        id.tenant ?? null,
        id.clientId ?? null,
        id.kind,
        lifetimeMs,
        req.capAtCredentialExpiry !== false ? (id.expiresAt ?? null) : null,
      ]);
      const hit = cache.get(cacheKey);
      if (hit !== undefined) {
        stats.cached++;
        return hit;
      }
      return once(cacheKey, async () => {
        const { jwt, exp } = await signNow(req, lifetimeMs);
        const issued = now();
        const margin = Math.min(30_000, Math.floor((exp - issued) / 4));
        cache.set(cacheKey, jwt, exp - margin, id.principal);
        return jwt;
      });
    },
    async jwks() {
      return { keys: (await currentKeys()).publicJwks };
    },
    stats,
  };
}

function checkTtl(ms: number, field: string): void {
  if (!Number.isFinite(ms) || ms < 1000 || ms > MAX_ASSERTION_TTL_MS)
    throw new McpGateError("ERR_INVALID_OPTION", `${field} must be between 1s and 1h`);
}
