import { McpGateError } from "../core/errors.js";
import type { Identity } from "../core/identity.js";
import { fetchJson } from "./http-json.js";
import { oauthIdentity, scopesFromClaims } from "./oauth-identity.js";
import { createTokenCache, type TokenCache } from "./token-cache.js";
import type { CredentialVerifier, VerifyResult } from "./verifier.js";

/** Options of {@link createIntrospectionVerifier}. */
export interface IntrospectionOptions {
  /** The issuer whose tokens this endpoint answers for (RFC 7662 `iss`, when returned, must equal it). */
  issuer: string;
  /** RFC 7662 introspection endpoint. */
  endpoint: string;
  /** The resource server's own client credentials at the AS (RFC 7662 §2.1 requires the caller to authenticate). */
  clientId?: string;
  clientSecret?: string;
  /** Accepted audience(s): the public URL of the MCP endpoint (RFC 8707). Required. */
  audience: string | string[];
  /**
   * A response with no `aud` is refused unless this is false: the MCP spec requires the server to
   * verify it is the intended recipient (A-1125 L690). Default true.
   */
  requireAudience?: boolean;
  /** Abort an introspection call after this long. Default 5 000 ms. */
  timeoutMs?: number;
  /** Seconds of leeway for `exp`/`nbf`. Default 0. */
  clockToleranceSec?: number;
  /** Cache active results by token hash until `exp` (or this shorter TTL). Default: until `exp`. */
  cacheTtlMs?: number;
  /** Entries in the result cache. 0 disables it. Default 10 000. */
  cacheMaxEntries?: number;
  /** Clock in epoch milliseconds. Default `Date.now`. */
  now?: () => number;
}

/** Outcome of one introspection call: a verification result, or an infrastructure failure. */
export type IntrospectionResult = VerifyResult;

function basicAuth(id: string, secret: string): string {
  // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64 ("a:b" would otherwise be ambiguous).
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, "+");
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString("base64")}`;
}

function audienceMatches(aud: unknown, accepted: readonly string[]): boolean | undefined {
  if (aud === undefined) return undefined;
  const list = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud : [];
  return list.some((a) => typeof a === "string" && accepted.includes(a));
}

/** Default `introspection.timeout` (docs/configuration.md). */
export const DEFAULT_INTROSPECTION_TIMEOUT_MS = 5_000;

/**
 * RFC 7662 §2.3 / RFC 6749 §5.2 error answers that are about the token sent, not about the
 * resource server's request: oidc-provider answers 400 `unsupported_token_type` for a JWT-shaped
 * token it did not issue, others 400 `invalid_request`. A 401 `invalid_client` (our credentials)
 * stays an endpoint failure.
 */
const TOKEN_REFUSALS = new Set(["invalid_request", "unsupported_token_type", "invalid_token"]);

function refusesToken(json: unknown): boolean {
  const error = (json as { error?: unknown } | null)?.error;
  return typeof error === "string" && TOKEN_REFUSALS.has(error);
}

/**
 * Verify opaque access tokens with RFC 7662 token introspection. An inactive token is `inactive`,
 * and so is one the AS refuses with 400 `invalid_request`/`unsupported_token_type`/`invalid_token`;
 * an endpoint that is down or answers garbage throws McpGateError `ERR_INTROSPECTION` (the gate
 * answers 503: the token may well be valid). Active results are cached by the SHA-256 of the token
 * until `exp`, so a client's repeat requests cost no round trip.
 *
 * @example
 * const v = createIntrospectionVerifier({
 *   issuer: "https://auth.example.com",
 *   endpoint: "https://auth.example.com/token/introspection",
 *   clientId: "mcp-gateway", clientSecret: process.env.INTROSPECTION_SECRET,
 *   audience: "https://mcp.example.com/mcp",
 * });
 * await v.verify(token); // { ok: true, identity } | { ok: false, reason: "inactive" }
 */
export function createIntrospectionVerifier(
  options: IntrospectionOptions,
): CredentialVerifier & { cache: TokenCache } {
  const issuer = options.issuer;
  try {
    new URL(options.endpoint);
  } catch {
    throw new McpGateError("ERR_INVALID_OPTION", "introspection.endpoint must be an absolute URL");
  }
  const audiences = typeof options.audience === "string" ? [options.audience] : [...(options.audience ?? [])];
  if (audiences.length === 0 || audiences.some((a) => typeof a !== "string" || a === "")) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      "introspection.audience must name at least one audience (the public URL)",
    );
  }
  if ((options.clientId === undefined) !== (options.clientSecret === undefined)) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      "introspection.clientId and introspection.clientSecret go together",
    );
  }
  const requireAudience = options.requireAudience ?? true;
  const timeoutMs = options.timeoutMs ?? DEFAULT_INTROSPECTION_TIMEOUT_MS;
  const toleranceSec = options.clockToleranceSec ?? 0;
  const now = options.now ?? Date.now;
  const cache = createTokenCache({ maxEntries: options.cacheMaxEntries, maxTtlMs: options.cacheTtlMs, now });
  const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
  if (options.clientId !== undefined && options.clientSecret !== undefined) {
    headers.authorization = basicAuth(options.clientId, options.clientSecret);
  }

  async function introspect(token: string): Promise<VerifyResult> {
    const body = new URLSearchParams({ token, token_type_hint: "access_token" }).toString();
    const res = await fetchJson(options.endpoint, { method: "POST", headers, body, timeoutMs });
    // The AS refusing the *token* (not us): "not a token we know", a 401 that counts toward the
    // guard, never a 503 an unauthenticated caller could trigger at will (issue 14 item 9).
    if (res.ok && res.status === 400 && refusesToken(res.json)) return { ok: false, reason: "inactive" };
    if (!res.ok || res.status !== 200) {
      const why = res.ok ? `HTTP ${res.status}` : res.error;
      throw new McpGateError("ERR_INTROSPECTION", `token introspection failed (${why})`);
    }
    const claims = res.json as Record<string, unknown> | null;
    if (!claims || typeof claims !== "object" || typeof claims.active !== "boolean") {
      throw new McpGateError("ERR_INTROSPECTION", "token introspection answered without a boolean `active`");
    }
    // RFC 7662 §2.2: `active` is the only required member; everything else is checked when present.
    if (!claims.active) return { ok: false, reason: "inactive" };
    const nowSec = now() / 1000;
    if (typeof claims.exp !== "number") return { ok: false, reason: "invalid" };
    if (claims.exp + toleranceSec <= nowSec) return { ok: false, reason: "expired" };
    if (typeof claims.nbf === "number" && claims.nbf - toleranceSec > nowSec)
      return { ok: false, reason: "invalid" };
    if (claims.iss !== undefined && claims.iss !== issuer) return { ok: false, reason: "wrong_issuer" };
    const aud = audienceMatches(claims.aud, audiences);
    if (aud === false || (aud === undefined && requireAudience))
      return { ok: false, reason: "wrong_audience" };
    // A client-credentials token has no resource owner: RFC 7662 `sub` is then absent, the client is the subject.
    const sub = typeof claims.sub === "string" && claims.sub !== "" ? claims.sub : claims.client_id;
    if (typeof sub !== "string" || sub === "") return { ok: false, reason: "invalid" };
    const identity: Identity = oauthIdentity({
      issuer,
      subject: sub,
      scopes: scopesFromClaims(claims),
      clientId: typeof claims.client_id === "string" ? claims.client_id : undefined,
      expiresAt: claims.exp,
    });
    return { ok: true, identity };
  }

  return {
    kind: "oauth2",
    issuers: Object.freeze([issuer]),
    cache,
    accepts: (token) => token.length > 0,
    async verify(token) {
      const cached = cache.get(token);
      if (cached) return { ok: true, identity: cached };
      const result = await introspect(token);
      if (result.ok) cache.set(token, result.identity);
      return result;
    },
  };
}
