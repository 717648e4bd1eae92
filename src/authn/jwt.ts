import {
  type CryptoKey,
  decodeJwt,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  type JWTVerifyResult,
  jwtVerify,
} from "jose";
import { isMcpGateError, McpGateError } from "../core/errors.js";
import type { Identity } from "../core/identity.js";
import type { AuthFailureReason } from "../core/outcome.js";
import { MAX_TOKEN_LENGTH } from "./bearer.js";
import { createIntrospectionVerifier, type IntrospectionOptions } from "./introspection.js";
import { discoverIssuer } from "./issuer-discovery.js";
import { createJwksKeySource, type JwksKeySource, type JwksOptions } from "./jwks.js";
import { oauthIdentity, scopesFromClaims } from "./oauth-identity.js";
import { createTokenCache, type TokenCache, tokenHash } from "./token-cache.js";
import type { CredentialVerifier, VerifyResult } from "./verifier.js";

/** Asymmetric JWS algorithms we accept (RFC 7518 §3, RFC 8037). Never `none`, never HS* against a JWKS. */
export const SUPPORTED_ALGORITHMS = Object.freeze([
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
]);

/** The default allow-list (DESIGN.md §7 `auth.jwt.algorithms`). */
export const DEFAULT_ALGORITHMS = Object.freeze(["RS256", "PS256", "ES256", "EdDSA"]);

/** One trusted authorization server. */
export interface JwtIssuerOptions {
  /** The exact `iss` value (and the base of metadata discovery when `jwksUri` is absent). */
  issuer: string;
  /** Accepted `aud` value(s). Default: the verifier's `publicUrl` (RFC 8707). */
  audience?: string | string[];
  /** JWKS URL. Absent: read `jwks_uri` from the issuer's metadata (RFC 8414 / OIDC Discovery). */
  jwksUri?: string;
  /** Allowed `alg` values. Default RS256, PS256, ES256, EdDSA. `none` and HS* are refused here. */
  algorithms?: string[];
  /** Leeway for `exp`/`nbf`/`iat`, in seconds. Default 0. */
  clockToleranceSec?: number;
  /** JWKS fetch behaviour (timeout, unknown-`kid` cooldown, stale serving). */
  jwks?: Omit<JwksOptions, "jwksUri">;
  /**
   * RFC 7662 introspection for this issuer's opaque tokens (and its JWTs too when it has no
   * `jwksUri`). `audience` defaults to the issuer's audience.
   */
  introspection?: Omit<
    IntrospectionOptions,
    "issuer" | "audience" | "now" | "cacheTtlMs" | "cacheMaxEntries"
  > & {
    audience?: string | string[];
  };
  /**
   * Required JOSE `typ` header, e.g. "at+jwt" (RFC 9068 §4 asks resource servers to check it, but
   * many issuers send "JWT", so it is opt-in). Default: not checked.
   */
  typ?: string;
  /** Timeout for metadata discovery. Default 5 000 ms. */
  discoveryTimeoutMs?: number;
}

/** Options of {@link createJwtVerifier}. */
export interface JwtVerifierOptions {
  /** Trusted issuers. A token is matched to one by its `iss`, and only ever to a configured one. */
  issuers: JwtIssuerOptions[];
  /** Canonical URL of the protected MCP endpoint: the default audience of every issuer (RFC 8707). */
  publicUrl?: string;
  /**
   * Verified-token cache. `false` turns it off. Default 10 000 entries, each until the token's
   * `exp` or `ttlMs` (default {@link DEFAULT_TOKEN_CACHE_TTL_MS}), whichever comes first, and
   * never after the token's signing key left the issuer's JWKS.
   */
  cache?: false | { maxEntries?: number; ttlMs?: number };
  /** Clock in epoch milliseconds (tests freeze it). Default `Date.now`. */
  now?: () => number;
}

/** A JWT/introspection verifier; `issuers` feeds the PRM `authorization_servers`. */
export interface JwtVerifier extends CredentialVerifier {
  readonly issuers: readonly string[];
  /** The verified-token cache (for metrics and tests). */
  readonly cache: TokenCache;
}

/** Default `auth.jwt.cacheTtl`: a cached verification is redone at least this often (5 min). */
export const DEFAULT_TOKEN_CACHE_TTL_MS = 300_000;
/** Default `clockTolerance`: no leeway on `exp`/`nbf` (docs/configuration.md says the same). */
export const DEFAULT_CLOCK_TOLERANCE_SEC = 0;

interface IssuerState {
  issuer: string;
  /** The JWKS the issuer's tokens are verified with, once known (bindings of cached tokens). */
  source?: JwksKeySource;
  verifyOptions: JWTVerifyOptions;
  /** The key source when it is known at construction (a configured `jwksUri`): no await per token. */
  getKey?: JWTVerifyGetKey;
  /** Resolves the key source, running discovery the first time when needed. */
  keys(): Promise<JWTVerifyGetKey | undefined>;
  introspect?: CredentialVerifier;
}

// JWS compact serialization: three base64url segments (RFC 7515 §7.1).
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

function invalidOption(message: string): McpGateError {
  return new McpGateError("ERR_INVALID_OPTION", message);
}

function checkAlgorithms(list: string[] | undefined, where: string): string[] {
  const algs = list ?? [...DEFAULT_ALGORITHMS];
  if (!Array.isArray(algs) || algs.length === 0)
    throw invalidOption(`${where}.algorithms must be a non-empty array`);
  for (const alg of algs) {
    if (typeof alg !== "string" || alg.toLowerCase() === "none" || /^HS/i.test(alg)) {
      // RFC 8725 §3.1-3.2: `none` and symmetric algorithms against public keys enable forgery.
      throw invalidOption(
        `${where}.algorithms: "${String(alg)}" is never accepted (use an asymmetric algorithm)`,
      );
    }
    if (!SUPPORTED_ALGORITHMS.includes(alg))
      throw invalidOption(`${where}.algorithms: unsupported algorithm "${alg}"`);
  }
  return [...algs];
}

function checkAudience(
  aud: string | string[] | undefined,
  publicUrl: string | undefined,
  where: string,
): string[] {
  const list =
    aud === undefined
      ? publicUrl === undefined
        ? []
        : [publicUrl]
      : typeof aud === "string"
        ? [aud]
        : [...aud];
  if (list.length === 0 || list.some((a) => typeof a !== "string" || a === "")) {
    throw invalidOption(
      `${where}.audience is required (or pass publicUrl): a token must be issued for this server (RFC 8707)`,
    );
  }
  return list;
}

/** Map a jose error (or our JWKS failure) to the reason a token is refused. */
export function reasonForJoseError(err: unknown): AuthFailureReason {
  if (isMcpGateError(err, "ERR_JWKS_UNAVAILABLE")) return "no_key";
  const e = err as { code?: string; claim?: string; reason?: string };
  switch (e?.code) {
    case "ERR_JWT_EXPIRED":
      return "expired";
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      if (e.claim === "iss") return "wrong_issuer";
      if (e.claim === "aud") return "wrong_audience";
      return "invalid"; // nbf in the future, missing exp/sub, iat in the future
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return "bad_signature";
    case "ERR_JWKS_NO_MATCHING_KEY":
    case "ERR_JWKS_TIMEOUT":
      return "no_key";
    case "ERR_JWS_INVALID":
    case "ERR_JWT_INVALID":
      return "malformed";
    default:
      // ERR_JOSE_ALG_NOT_ALLOWED, ERR_JOSE_NOT_SUPPORTED, ERR_JWK_INVALID, anything unexpected.
      return "invalid";
  }
}

function createIssuerState(
  opts: JwtIssuerOptions,
  publicUrl: string | undefined,
  index: number,
  now?: () => number,
): IssuerState {
  const where = `issuers[${index}]`;
  if (typeof opts?.issuer !== "string" || opts.issuer === "")
    throw invalidOption(`${where}.issuer is required`);
  const issuer = opts.issuer;
  const algorithms = checkAlgorithms(opts.algorithms, where);
  const audience = checkAudience(opts.audience, publicUrl, where);
  const tolerance = opts.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC;
  if (!Number.isFinite(tolerance) || tolerance < 0)
    throw invalidOption(`${where}.clockToleranceSec must be >= 0`);
  const discoveryTimeoutMs = opts.discoveryTimeoutMs ?? 5_000;
  const retryAfterFailureMs = opts.jwks?.retryAfterFailureMs ?? 5_000;

  const verifyOptions: JWTVerifyOptions = {
    issuer,
    audience,
    algorithms,
    clockTolerance: tolerance,
    // RFC 9068 §4 and DESIGN.md: a token without exp or sub is refused.
    requiredClaims: ["exp", "sub"],
  };
  if (opts.typ !== undefined) verifyOptions.typ = opts.typ;
  if (now)
    Object.defineProperty(verifyOptions, "currentDate", { get: () => new Date(now()), enumerable: true });

  let introspect: CredentialVerifier | undefined;
  if (opts.introspection) {
    introspect = createIntrospectionVerifier({
      ...opts.introspection,
      issuer,
      audience: opts.introspection.audience ?? audience,
      clockToleranceSec: opts.introspection.clockToleranceSec ?? tolerance,
      // The outer verifier caches; a second cache here would only hold the same entries twice.
      cacheMaxEntries: 0,
      ...(now ? { now } : {}),
    });
  }

  const state: IssuerState = { issuer, verifyOptions, keys: async () => undefined };
  let keys: () => Promise<JWTVerifyGetKey | undefined>;
  let staticKey: JWTVerifyGetKey | undefined;
  if (opts.jwksUri !== undefined) {
    const source = createJwksKeySource({ ...opts.jwks, jwksUri: opts.jwksUri });
    state.source = source;
    staticKey = source.getKey;
    keys = async () => source.getKey;
  } else if (introspect) {
    keys = async () => undefined;
  } else {
    try {
      new URL(issuer);
    } catch {
      throw invalidOption(`${where}: without jwksUri the issuer must be a URL (for metadata discovery)`);
    }
    // Discovery runs on first use (no async work at construction); a failure is retried after a
    // pause, and until then tokens of this issuer fail closed with `no_key`.
    let resolved: JWTVerifyGetKey | undefined;
    let pending: Promise<JWTVerifyGetKey> | undefined;
    let failedAt = Number.NEGATIVE_INFINITY;
    keys = async () => {
      if (resolved) return resolved;
      if (Date.now() - failedAt < retryAfterFailureMs) {
        throw new McpGateError("ERR_JWKS_UNAVAILABLE", "issuer metadata discovery failed recently");
      }
      pending ??= discoverIssuer(issuer, { timeoutMs: discoveryTimeoutMs }).then((meta) => {
        if (!meta.jwks_uri)
          throw new McpGateError("ERR_ISSUER_DISCOVERY", `issuer ${issuer} publishes no jwks_uri`);
        state.source = createJwksKeySource({ ...opts.jwks, jwksUri: meta.jwks_uri });
        return state.source.getKey;
      });
      try {
        resolved = await pending;
        return resolved;
      } catch (err) {
        failedAt = Date.now();
        pending = undefined;
        throw new McpGateError("ERR_JWKS_UNAVAILABLE", "issuer metadata discovery failed", { cause: err });
      }
    };
  }
  state.keys = keys;
  if (staticKey) state.getKey = staticKey;
  if (introspect) state.introspect = introspect;
  return state;
}

/**
 * jwtVerify with the issuer's keys. The whole result is returned: its `protectedHeader` (decoded
 * and verified with the signature) names the `kid` the cache binding needs, so the header is not
 * decoded a second time.
 */
async function verifyWithKeys(
  token: string,
  getKey: JWTVerifyGetKey,
  options: JWTVerifyOptions,
): Promise<JWTVerifyResult> {
  try {
    return await jwtVerify(token, getKey, options);
  } catch (err) {
    // Several keys fit a token without `kid` (jose v6 leaves the choice to us): try each in turn.
    const iterable = err as Partial<AsyncIterable<CryptoKey>> & { code?: string };
    if (iterable.code !== "ERR_JWKS_MULTIPLE_MATCHING_KEYS" || !iterable[Symbol.asyncIterator]) throw err;
    let last: unknown = err;
    for await (const key of iterable as AsyncIterable<CryptoKey>) {
      try {
        return await jwtVerify(token, key, options);
      } catch (e) {
        last = e;
        if ((e as { code?: string }).code !== "ERR_JWS_SIGNATURE_VERIFICATION_FAILED") break;
      }
    }
    throw last;
  }
}

/**
 * An OAuth 2.1 resource-server verifier (MCP spec "Token Validation"): JWT access tokens checked
 * with jose against each trusted issuer's JWKS (signature first, then `iss`, `aud`, `exp`, `nbf`,
 * `sub`), opaque tokens via RFC 7662 introspection when configured. Verified tokens are cached by
 * hash until `exp`. Every failure is a value naming an `AuthFailureReason`; no error carries the token.
 *
 * @example
 * const verifier = createJwtVerifier({
 *   publicUrl: "https://mcp.example.com/mcp",
 *   issuers: [{ issuer: "https://auth.example.com" }], // JWKS found by metadata discovery
 * });
 * const r = await verifier.verify(token);
 * if (r.ok) r.identity.principal; // "oauth:https://auth.example.com#user-42"
 */
export function createJwtVerifier(options: JwtVerifierOptions): JwtVerifier {
  if (!options || !Array.isArray(options.issuers) || options.issuers.length === 0) {
    throw invalidOption("jwt.issuers must list at least one issuer");
  }
  const now = options.now;
  const byIssuer = new Map<string, IssuerState>();
  options.issuers.forEach((opts, i) => {
    const state = createIssuerState(opts, options.publicUrl, i, now);
    if (byIssuer.has(state.issuer))
      throw invalidOption(`issuers[${i}]: issuer ${state.issuer} is listed twice`);
    byIssuer.set(state.issuer, state);
  });
  const introspectors = [...byIssuer.values()].filter((s) => s.introspect).map((s) => s.introspect!);
  const cacheOpts =
    options.cache === false
      ? { maxEntries: 0 }
      : {
          maxEntries: options.cache?.maxEntries,
          maxTtlMs: options.cache?.ttlMs ?? DEFAULT_TOKEN_CACHE_TTL_MS,
        };
  const cache = createTokenCache({ ...cacheOpts, ...(now ? { now } : {}) });

  /** Why a cached JWT stops being trusted before its `exp`: its key left the issuer's JWKS. */
  const bindings = new WeakMap<Identity, () => boolean>();

  async function verifyJwt(token: string): Promise<VerifyResult> {
    let claims: JWTPayload;
    try {
      claims = decodeJwt(token);
    } catch {
      return { ok: false, reason: "malformed" };
    }
    // Select by the unverified `iss`, but only among configured issuers: an attacker's `iss` never
    // makes us fetch anything. The signature and every claim are checked by jwtVerify below.
    const state = typeof claims.iss === "string" ? byIssuer.get(claims.iss) : undefined;
    if (!state) return { ok: false, reason: "wrong_issuer" };
    let getKey = state.getKey;
    if (!getKey) {
      try {
        getKey = await state.keys();
      } catch (err) {
        return { ok: false, reason: reasonForJoseError(err) };
      }
    }
    // No JWKS but introspection: the AS answers for its JWTs too. Its outage throws ERR_INTROSPECTION (→ 503).
    if (!getKey) return state.introspect ? state.introspect.verify(token) : { ok: false, reason: "no_key" };
    let verified: JWTVerifyResult;
    try {
      verified = await verifyWithKeys(token, getKey, state.verifyOptions);
    } catch (err) {
      return { ok: false, reason: reasonForJoseError(err) };
    }
    const { payload, protectedHeader } = verified;
    if (typeof payload.sub !== "string" || payload.sub === "" || typeof payload.exp !== "number") {
      return { ok: false, reason: "invalid" };
    }
    const clientId =
      typeof payload.client_id === "string"
        ? payload.client_id
        : typeof payload.azp === "string"
          ? payload.azp
          : undefined;
    const identity = oauthIdentity({
      issuer: state.issuer,
      subject: payload.sub,
      scopes: scopesFromClaims(payload),
      clientId,
      expiresAt: payload.exp,
    });
    if (state.source) {
      const kid = protectedHeader.kid;
      bindings.set(identity, state.source.binding(typeof kid === "string" ? kid : undefined));
    }
    return { ok: true, identity };
  }

  async function verifyOpaque(token: string): Promise<VerifyResult> {
    if (introspectors.length === 0) return { ok: false, reason: "malformed" };
    // An opaque token names no issuer: ask each introspecting issuer until one knows it.
    let last: VerifyResult = { ok: false, reason: "inactive" };
    for (const v of introspectors) {
      last = await v.verify(token);
      if (last.ok || last.reason !== "inactive") return last;
    }
    return last;
  }

  return {
    kind: "oauth2",
    issuers: Object.freeze([...byIssuer.keys()]),
    cache,
    // An mcpgate API key (`mcpg_…`, DESIGN.md §5) is never sent to an introspection endpoint.
    accepts: (token) => JWT_SHAPE.test(token) || (introspectors.length > 0 && !token.startsWith("mcpg_")),
    async verify(token: string): Promise<VerifyResult> {
      if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
        return { ok: false, reason: "malformed" };
      }
      const hash = cache.enabled ? tokenHash(token) : "";
      if (cache.enabled) {
        const hit = cache.getByHash(hash);
        if (hit) return { ok: true, identity: hit };
      }
      const result = JWT_SHAPE.test(token) ? await verifyJwt(token) : await verifyOpaque(token);
      if (result.ok && cache.enabled) cache.setByHash(hash, result.identity, bindings.get(result.identity));
      return result;
    },
  };
}
