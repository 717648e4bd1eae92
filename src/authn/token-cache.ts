import * as nodeCrypto from "node:crypto";
import { McpGateError } from "../core/errors.js";
import type { Identity } from "../core/identity.js";

/** Options of {@link createTokenCache}. */
export interface TokenCacheOptions {
  /** Most entries kept; the least recently used is evicted first. Default 10 000. 0 disables the cache. */
  maxEntries?: number;
  /** Upper bound on how long a verified token is trusted without re-verification. Default: until `exp`. */
  maxTtlMs?: number;
  /** Clock in epoch milliseconds (tests freeze it). Default `Date.now`. */
  now?: () => number;
}

/** A bounded LRU of verified tokens, keyed by the SHA-256 of the token (never the token itself). */
export interface TokenCache {
  /** The identity a token verified to, if it is cached and still valid. */
  get(token: string): Identity | undefined;
  /** Remember a verified token until `identity.expiresAt` (or the shorter `maxTtlMs`). */
  set(token: string, identity: Identity): void;
  /** `get` by a precomputed {@link tokenHash} (saves hashing twice on a miss). */
  getByHash(hash: string): Identity | undefined;
  /**
   * `set` by a precomputed {@link tokenHash}. `stillValid`, when given, is asked on every hit: once
   * it answers false the entry is dropped (e.g. the token's signing key left the JWKS).
   */
  setByHash(hash: string, identity: Identity, stillValid?: () => boolean): void;
  /** Forget a token (e.g. after revocation). */
  delete(token: string): void;
  clear(): void;
  readonly size: number;
  /** False when `maxEntries` is 0 (callers can then skip hashing). */
  readonly enabled: boolean;
}

interface Entry {
  identity: Identity;
  /** Epoch ms after which the entry is dead. */
  until: number;
  stillValid?: () => boolean;
}

/**
 * The hash used as the cache key: a SHA-256 of the token, so the process memory holds no usable
 * credential and a heap dump of the cache cannot be replayed.
 *
 * @example tokenHash("eyJ...") // "3q2+7w..." (base64url, 43 chars)
 */
export function tokenHash(token: string): string {
  // crypto.hash (Node ≥ 20.12) is a one-shot digest, about twice as fast as createHash for a token.
  if (oneShot) return oneShot("sha256", token, "base64url");
  return nodeCrypto.createHash("sha256").update(token, "utf8").digest("base64url");
}

const oneShot = (nodeCrypto as { hash?: (alg: string, data: string, enc: "base64url") => string }).hash;

function freezeIdentity(identity: Identity): Identity {
  return Object.freeze({ ...identity, scopes: Object.freeze([...identity.scopes]) as string[] });
}

/**
 * A verified-token cache: repeat requests with the same token skip signature verification.
 * An entry lives until the token's `exp` (never longer) or `maxTtlMs`, whichever comes first.
 *
 * @example
 * const cache = createTokenCache({ maxEntries: 10_000, maxTtlMs: 60_000 });
 * cache.set(token, identity);
 * cache.get(token); // identity (a fresh copy)
 */
export function createTokenCache(options: TokenCacheOptions = {}): TokenCache {
  const maxEntries = options.maxEntries ?? 10_000;
  const maxTtlMs = options.maxTtlMs ?? Number.POSITIVE_INFINITY;
  const now = options.now ?? Date.now;
  if (!Number.isInteger(maxEntries) || maxEntries < 0) {
    throw new McpGateError("ERR_INVALID_OPTION", "tokenCache.maxEntries must be a non-negative integer");
  }
  if (!(maxTtlMs >= 0)) {
    throw new McpGateError("ERR_INVALID_OPTION", "tokenCache.maxTtlMs must be a non-negative number");
  }
  // A Map iterates in insertion order: re-inserting on a hit makes the first key the least recent.
  const entries = new Map<string, Entry>();

  return {
    get(token) {
      if (maxEntries === 0) return undefined;
      return this.getByHash(tokenHash(token));
    },
    getByHash(key) {
      if (maxEntries === 0) return undefined;
      const entry = entries.get(key);
      if (!entry) return undefined;
      if (now() >= entry.until || entry.stillValid?.() === false) {
        entries.delete(key);
        return undefined;
      }
      entries.delete(key);
      entries.set(key, entry);
      return { ...entry.identity, scopes: [...entry.identity.scopes] };
    },
    set(token, identity) {
      if (maxEntries === 0) return;
      this.setByHash(tokenHash(token), identity);
    },
    setByHash(key, identity, stillValid) {
      if (maxEntries === 0) return;
      const t = now();
      // A token without exp is never cached: its lifetime is unknown (and our verifiers refuse it).
      if (identity.expiresAt === undefined) return;
      const until = Math.min(identity.expiresAt * 1000, t + maxTtlMs);
      if (until <= t) return;
      entries.delete(key);
      entries.set(key, { identity: freezeIdentity(identity), until, ...(stillValid ? { stillValid } : {}) });
      while (entries.size > maxEntries) {
        const oldest = entries.keys().next().value as string;
        entries.delete(oldest);
      }
    },
    delete(token) {
      entries.delete(tokenHash(token));
    },
    clear() {
      entries.clear();
    },
    get size() {
      return entries.size;
    },
    enabled: maxEntries > 0,
  };
}
