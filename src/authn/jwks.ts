import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type JWTVerifyGetKey,
  jwksCache,
} from "jose";
import { McpGateError } from "../core/errors.js";

/** Options of {@link createJwksKeySource}. */
export interface JwksOptions {
  /** The JWKS URL (from config or from the issuer's metadata `jwks_uri`). */
  jwksUri: string;
  /** Abort a JWKS fetch after this long. Default 5 000 ms. */
  timeoutMs?: number;
  /**
   * After a successful fetch, an unknown `kid` triggers no new fetch for this long, so a flood of
   * tokens with random `kid`s cannot make us hammer the issuer. Default 30 000 ms.
   */
  cooldownMs?: number;
  /** Refetch the JWKS in the background of a request once it is older than this. Default 600 000 ms. */
  refreshMs?: number;
  /**
   * While the JWKS endpoint is down, keep verifying with the last keys fetched, for at most this
   * long after that fetch. Past it, fail closed. Default 86 400 000 ms (24 h).
   */
  maxStaleMs?: number;
  /** After a failed fetch, do not try again for this long (the failure cooldown). Default 5 000 ms. */
  retryAfterFailureMs?: number;
  /**
   * Told after every JWKS fetch (metrics). A hook rather than an import, so authn/ stays free of
   * observe/. Must not throw; what it throws is ignored.
   */
  onFetch?: (outcome: "ok" | "error") => void;
}

/** Why no key could be produced: the token names a key the issuer does not publish, or the JWKS is unreachable. */
export type JwksFailure = "no_matching_key" | "unavailable";

/** A jose key resolver over a remote JWKS that survives the JWKS endpoint going down. */
export interface JwksKeySource {
  /** Pass to `jwtVerify` as the key. Throws jose's errors, or McpGateError ERR_JWKS_UNAVAILABLE. */
  readonly getKey: JWTVerifyGetKey;
  /** The JWKS URL. */
  readonly uri: string;
  /** Epoch ms of the last successful fetch, if any. */
  readonly fetchedAt: number | undefined;
  /**
   * A test that stays true while the key a token was verified with is still published: for a
   * `kid`, while the last key set fetched lists that `kid`; without one, while the key set is the
   * one the token was verified against. The verified-token cache drops an entry once it turns
   * false (issue 14 item 6: a cached token must not outlive its signing key).
   */
  binding(kid: string | undefined): () => boolean;
}

/** Defaults of {@link JwksOptions} (docs/configuration.md `jwksTimeout`, `jwksCooldown`, `jwksMaxAge`). */
export const JWKS_DEFAULTS = {
  timeoutMs: 5_000,
  cooldownMs: 30_000,
  refreshMs: 600_000,
  maxStaleMs: 86_400_000,
  retryAfterFailureMs: 5_000,
};

function nonNegativeInt(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) {
    throw new McpGateError("ERR_INVALID_OPTION", `${name} must be a non-negative number of milliseconds`);
  }
  return Math.round(value);
}

/** Errors that are jose's answer about the keys (the JWKS was read fine), not a fetch failure. */
function isKeyAnswer(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return (
    code === "ERR_JWKS_NO_MATCHING_KEY" ||
    code === "ERR_JWKS_MULTIPLE_MATCHING_KEYS" ||
    code === "ERR_JOSE_NOT_SUPPORTED" ||
    code === "ERR_JWK_INVALID"
  );
}

/**
 * A thin layer over jose's `createRemoteJWKSet` (which already refetches on an unknown `kid` with a
 * cooldown, enforces a fetch timeout and de-duplicates concurrent fetches). It adds what users of
 * remote JWKS ask for and jose leaves out:
 * - the last good key set keeps verifying while the JWKS endpoint is down, up to `maxStaleMs`;
 * - a failed fetch is not retried for `retryAfterFailureMs` (jose's cooldown counts only from a
 *   successful fetch, so an unreachable JWKS would otherwise be fetched on every request);
 * - with no key known, it fails closed with McpGateError `ERR_JWKS_UNAVAILABLE` (the verifier maps
 *   it to a 401 `no_key`), never a crash.
 *
 * @example
 * const keys = createJwksKeySource({ jwksUri: "https://auth.example.com/jwks" });
 * await jwtVerify(token, keys.getKey, { issuer, audience, algorithms: ["RS256"] });
 */
export function createJwksKeySource(options: JwksOptions): JwksKeySource {
  let url: URL;
  try {
    url = new URL(options.jwksUri);
  } catch {
    throw new McpGateError("ERR_INVALID_OPTION", "jwksUri must be an absolute URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new McpGateError("ERR_INVALID_OPTION", "jwksUri must be an http(s) URL");
  }
  const timeoutMs = nonNegativeInt(options.timeoutMs, JWKS_DEFAULTS.timeoutMs, "jwksTimeoutMs");
  const cooldownMs = nonNegativeInt(options.cooldownMs, JWKS_DEFAULTS.cooldownMs, "jwksCooldownMs");
  const refreshMs = nonNegativeInt(options.refreshMs, JWKS_DEFAULTS.refreshMs, "jwksRefreshMs");
  const maxStaleMs = nonNegativeInt(options.maxStaleMs, JWKS_DEFAULTS.maxStaleMs, "jwksMaxStaleMs");
  const retryAfterFailureMs = nonNegativeInt(
    options.retryAfterFailureMs,
    JWKS_DEFAULTS.retryAfterFailureMs,
    "jwksRetryAfterFailureMs",
  );

  // jose writes every successful fetch here ({ uat, jwks }): our copy of the last good key set.
  const lastGood: { uat?: number; jwks?: JSONWebKeySet } = {};
  const remote = createRemoteJWKSet(url, {
    timeoutDuration: timeoutMs,
    cooldownDuration: cooldownMs,
    cacheMaxAge: refreshMs,
    [jwksCache]: lastGood as { uat: number; jwks: JSONWebKeySet },
  });

  let failedAt = Number.NEGATIVE_INFINITY;
  let staleFor: number | undefined;
  let staleSet: ReturnType<typeof createLocalJWKSet> | undefined;

  /** The last good key set as a local resolver, if it is not older than `maxStaleMs`. */
  function stale(): ReturnType<typeof createLocalJWKSet> | undefined {
    const { uat, jwks } = lastGood;
    if (uat === undefined || jwks === undefined || Date.now() - uat > maxStaleMs) return undefined;
    if (staleFor !== uat) {
      staleSet = createLocalJWKSet(jwks);
      staleFor = uat;
    }
    return staleSet;
  }

  function unavailable(cause?: unknown): McpGateError {
    // The cause is a network error about the JWKS URL: it carries no token.
    return new McpGateError(
      "ERR_JWKS_UNAVAILABLE",
      "no signing key available: the issuer's JWKS could not be fetched",
      { cause },
    );
  }

  const report = (outcome: "ok" | "error") => {
    try {
      options.onFetch?.(outcome);
    } catch {
      // A metrics hook must never change a verification result.
    }
  };

  // jose stamps every successful fetch into lastGood.uat; a new stamp is one fetch (concurrent
  // callers share jose's single in-flight fetch, so it is reported once).
  let reportedUat: number | undefined;
  const reportNewSet = () => {
    if (lastGood.uat !== undefined && lastGood.uat !== reportedUat) {
      reportedUat = lastGood.uat;
      report("ok");
    }
  };

  const getKey: JWTVerifyGetKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput) => {
    if (Date.now() - failedAt < retryAfterFailureMs) {
      // Recently failed: do not touch the network, answer from the last good keys (or fail closed).
      const local = stale();
      if (!local) throw unavailable();
      return local(header, token);
    }
    try {
      const key = await remote(header, token);
      reportNewSet();
      return key;
    } catch (err) {
      if (isKeyAnswer(err)) {
        // An unknown `kid` makes jose refetch; the refetch itself may have succeeded.
        reportNewSet();
        throw err;
      }
      report("error");
      failedAt = Date.now();
      const local = stale();
      if (!local) throw unavailable(err);
      return local(header, token);
    }
  };

  // The published kids and a content version, recomputed only when jose stores a new key set.
  let seenSet: JSONWebKeySet | undefined;
  let seenJson = "";
  let kids = new Set<string>();
  let version = 0;
  const current = () => {
    const jwks = lastGood.jwks;
    if (jwks !== seenSet) {
      seenSet = jwks;
      const json = JSON.stringify(jwks?.keys ?? []);
      if (json !== seenJson) {
        seenJson = json;
        version++;
        kids = new Set((jwks?.keys ?? []).flatMap((k) => (typeof k.kid === "string" ? [k.kid] : [])));
      }
    }
    return { kids, version };
  };

  return {
    getKey,
    uri: url.href,
    get fetchedAt() {
      return lastGood.uat;
    },
    binding(kid) {
      if (kid !== undefined) return () => current().kids.has(kid);
      const at = current().version;
      return () => current().version === at;
    },
  };
}
