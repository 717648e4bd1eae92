import { decodeJwt } from "jose";
import { fetchJson } from "../authn/http-json.js";
import { tokenHash } from "../authn/token-cache.js";
import { McpGateError } from "../core/errors.js";
import { createTtlCache, singleFlight } from "./ttl-cache.js";

// RFC 8693 §2.1 / §3 identifiers.
const GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
/** A subject token longer than this is not exchanged (nor hashed into the cache). */
const MAX_TOKEN_CHARS = 16 * 1024;

/** Options of {@link createTokenExchanger}. */
export interface TokenExchangerOptions {
  /** The issuer's token endpoint, or a function resolving it (discovery, done once by the caller). */
  tokenEndpoint: string | (() => Promise<string>);
  /** The gateway's client at the issuer (RFC 6749 §2.3.1 client_secret_basic). */
  clientId: string;
  clientSecret: string;
  /** Abort an exchange after this long. Default 5000. */
  timeoutMs?: number;
  /** Most cached exchanged tokens. Default 10 000. */
  maxEntries?: number;
  /** Stop reusing an exchanged token this long before it expires. Default 10 000. */
  expiryMarginMs?: number;
  /** Clock (epoch ms). Default `Date.now`. */
  now?: () => number;
}

/** What to exchange for. */
export interface ExchangeRequest {
  /** The caller's access token (never logged, never forwarded, cached only as a SHA-256). */
  subjectToken: string;
  /** The subject token's own expiry (epoch seconds): the exchanged token is never cached past it. */
  subjectExpiresAt?: number;
  /** RFC 8707 `resource`: the upstream's URL. */
  resource: string;
  /** RFC 8693 `audience`, when the issuer names the upstream differently. */
  audience?: string;
  /** The upstream's name: part of the cache key. */
  upstream: string;
  /** The caller's principal: its exchanged tokens count against its share of the cache. */
  owner?: string;
}

/** The delegation recorded in the audit trail (RFC 8693 §4.1 `act`). */
export interface Delegation {
  /** The actor's claims from the issued token's `act`, else the gateway's client id. */
  act: { sub: string; [claim: string]: unknown };
}

/** The outcome of an exchange. Failures carry a class for logs, never the issuer's error text. */
export type ExchangeResult =
  | { ok: true; accessToken: string; expiresAt?: number; delegation: Delegation; cached: boolean }
  | { ok: false; reason: "rejected" | "unavailable" | "invalid_response" | "token_too_large" };

/** Counters: exchanges sent to the issuer, and answers served from the cache. */
export interface TokenExchangerStats {
  exchanges: number;
  cached: number;
  failures: number;
}

/** An RFC 8693 token-exchange client with a cache per (token hash, upstream). */
export interface TokenExchanger {
  exchange(request: ExchangeRequest): Promise<ExchangeResult>;
  /** The gateway's client at the issuer: the actor (RFC 8693 §4.1 `act`) of every exchange. */
  readonly clientId: string;
  readonly stats: Readonly<TokenExchangerStats>;
}

type Success = Extract<ExchangeResult, { ok: true }>;

/** A failed discovery of the issuer's token endpoint is tried again after this long, not sooner. */
const DISCOVERY_RETRY_MS = 5_000;

/**
 * Create a token-exchange client. The request follows RFC 8693 §2.1 (`subject_token_type` access
 * token, `requested_token_type` access token, `resource` per RFC 8707, client authentication per
 * RFC 6749 §2.3.1 with form-encoded id and secret); the answer must be a Bearer access token
 * (§2.2.1: `token_type` `N_A` means "not an access token" and is refused).
 *
 * @example
 * const tx = createTokenExchanger({ tokenEndpoint: "https://as.example.com/token", clientId, clientSecret });
 * const r = await tx.exchange({ subjectToken, resource: "http://127.0.0.1:3001/mcp", upstream: "notes" });
 */
export function createTokenExchanger(options: TokenExchangerOptions): TokenExchanger {
  if (!options.clientId || !options.clientSecret)
    throw new McpGateError("ERR_INVALID_OPTION", "token exchange: clientId and clientSecret are required");
  const now = options.now ?? Date.now;
  const timeoutMs = options.timeoutMs ?? 5000;
  const margin = options.expiryMarginMs ?? 10_000;
  const cache = createTtlCache<Success>(options.maxEntries ?? 10_000, now);
  const once = singleFlight<ExchangeResult>();
  const stats: TokenExchangerStats = { exchanges: 0, cached: 0, failures: 0 };
  const basic = `Basic ${Buffer.from(
    `${encodeURIComponent(options.clientId)}:${encodeURIComponent(options.clientSecret)}`,
  ).toString("base64")}`;
  let endpoint: Promise<string> | undefined;
  /** Until when a failed discovery is not tried again (every request would otherwise try it). */
  let discoveryFailedUntil = 0;

  function tokenEndpoint(): Promise<string> {
    const te = options.tokenEndpoint;
    if (typeof te === "string") return Promise.resolve(te);
    if (endpoint === undefined && now() < discoveryFailedUntil)
      return Promise.reject(new Error("token endpoint discovery failed recently"));
    endpoint ??= te().catch((err) => {
      endpoint = undefined;
      discoveryFailedUntil = now() + DISCOVERY_RETRY_MS;
      throw err;
    });
    return endpoint;
  }

  async function send(req: ExchangeRequest): Promise<ExchangeResult> {
    let url: string;
    try {
      url = await tokenEndpoint();
    } catch {
      return { ok: false, reason: "unavailable" };
    }
    const form = new URLSearchParams({
      grant_type: GRANT_TYPE,
      subject_token: req.subjectToken,
      subject_token_type: ACCESS_TOKEN_TYPE,
      requested_token_type: ACCESS_TOKEN_TYPE,
      resource: req.resource,
    });
    if (req.audience !== undefined) form.set("audience", req.audience);
    stats.exchanges++;
    const res = await fetchJson(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: basic },
      body: form.toString(),
      timeoutMs,
      maxBytes: 64 * 1024,
    });
    if (!res.ok) return { ok: false, reason: res.status === undefined ? "unavailable" : "invalid_response" };
    // RFC 6749 §5.2: 400/401 carry `error`; anything else from the endpoint is a server problem.
    if (res.status === 400 || res.status === 401) return { ok: false, reason: "rejected" };
    if (res.status !== 200) return { ok: false, reason: "unavailable" };
    return parseAnswer(res.json, req);
  }

  function parseAnswer(json: unknown, req: ExchangeRequest): ExchangeResult {
    const body = (json ?? {}) as Record<string, unknown>;
    const token = body.access_token;
    if (typeof token !== "string" || token === "" || token.length > MAX_TOKEN_CHARS || /[\s,]/.test(token))
      return { ok: false, reason: "invalid_response" };
    if (typeof body.token_type !== "string" || body.token_type.toLowerCase() !== "bearer")
      return { ok: false, reason: "invalid_response" };
    if (body.issued_token_type !== undefined && body.issued_token_type !== ACCESS_TOKEN_TYPE)
      return { ok: false, reason: "invalid_response" };
    const t = now();
    let claims: Record<string, unknown> = {};
    try {
      claims = decodeJwt(token) as Record<string, unknown>; // for exp and act only: the upstream verifies it
    } catch {
      // An opaque token: rely on expires_in.
    }
    const expiries: number[] = [];
    if (typeof body.expires_in === "number" && body.expires_in > 0) expiries.push(t + body.expires_in * 1000);
    if (typeof claims.exp === "number") expiries.push(claims.exp * 1000);
    if (req.subjectExpiresAt !== undefined) expiries.push(req.subjectExpiresAt * 1000);
    const expiresAt = expiries.length ? Math.min(...expiries) : undefined;
    const act =
      claims.act &&
      typeof claims.act === "object" &&
      typeof (claims.act as { sub?: unknown }).sub === "string"
        ? (claims.act as Delegation["act"])
        : { sub: options.clientId };
    const out: Success = { ok: true, accessToken: token, delegation: { act }, cached: false };
    if (expiresAt !== undefined) out.expiresAt = Math.floor(expiresAt / 1000);
    return out;
  }

  return {
    clientId: options.clientId,
    async exchange(req) {
      if (req.subjectToken.length > MAX_TOKEN_CHARS) return { ok: false, reason: "token_too_large" };
      const key = `${tokenHash(req.subjectToken)}\u0000${req.upstream}`;
      const hit = cache.get(key);
      if (hit) {
        stats.cached++;
        return { ...hit, cached: true };
      }
      const result = await once(key, () => send(req));
      if (!result.ok) {
        stats.failures++;
        return result;
      }
      // No expiry known: use the token for this request only rather than guess how long it lives.
      if (result.expiresAt !== undefined) cache.set(key, result, result.expiresAt * 1000 - margin, req.owner);
      return result;
    },
    stats,
  };
}
