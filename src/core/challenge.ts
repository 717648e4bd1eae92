import type { Denial } from "./outcome.js";

/** What the challenge needs to know about the deployment. */
export interface ChallengeContext {
  /** `realm` in WWW-Authenticate. Default "mcp". */
  realm?: string;
  /** Set only when OAuth is configured (DESIGN.md §2): the PRM URL to name in `resource_metadata`. */
  resourceMetadataUrl?: string;
  /** Scopes to suggest in a 401 challenge (RFC 6750 §3 `scope`), when known. */
  scopes?: string[];
}

/** An HTTP response, framework-neutral. */
export interface HttpResponseSpec {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** JSON-RPC error codes we emit. Custom codes stay outside -32768..-32000 (spec B-0728). */
export const JSONRPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  HEADER_MISMATCH: -32020,
  /** Application range: a gateway-side refusal of one message. */
  FORBIDDEN: -31001,
  RATE_LIMITED: -31002,
  SESSION_NOT_FOUND: -31003,
  UPSTREAM: -31004,
} as const;

/**
 * Quote a value for an auth-param (RFC 9110 §5.6.4 quoted-string): backslash-escape `"` and `\`,
 * drop control characters (they cannot appear in a header at all).
 *
 * @example headerQuoted('a"b') // "\"a\\\"b\""
 */
export function headerQuoted(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  const clean = value.replace(/[\u0000-\u001f\u007f]/g, "").replace(/[\\"]/g, (c) => `\\${c}`);
  return `"${clean}"`;
}

/** Build a `Bearer` challenge from ordered auth-params; every value is quoted. */
export function bearerChallenge(params: Array<[string, string | undefined]>): string {
  const parts = params.filter((p): p is [string, string] => p[1] !== undefined && p[1] !== "");
  if (parts.length === 0) return "Bearer";
  return `Bearer ${parts.map(([k, v]) => `${k}=${headerQuoted(v)}`).join(", ")}`;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponseSpec {
  return {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
    body: JSON.stringify(body),
  };
}

function rpcError(status: number, code: number, message: string, headers?: Record<string, string>) {
  // Transport-level refusals carry no id (spec T-1125: "JSON-RPC error response that has no id").
  return json(status, { jsonrpc: "2.0", error: { code, message }, id: null }, headers);
}

/**
 * The ONE place that maps a refusal to HTTP (DESIGN.md §2). Every header value is escaped here.
 *
 * @example
 * const res = renderDenial({ kind: "unauthenticated", reason: "missing" }, { realm: "mcp" });
 * // res.status === 401, res.headers["www-authenticate"] === 'Bearer realm="mcp"'
 */
export function renderDenial(denial: Denial, ctx: ChallengeContext = {}): HttpResponseSpec {
  const realm = ctx.realm ?? "mcp";
  switch (denial.kind) {
    case "unauthenticated": {
      const invalid = denial.reason !== "missing";
      const challenge = bearerChallenge([
        ["realm", realm],
        ["error", invalid ? "invalid_token" : undefined],
        // A generic description: never echo the credential or the precise reason to the caller.
        ["error_description", invalid ? "The access token is invalid" : undefined],
        ["resource_metadata", ctx.resourceMetadataUrl],
        ["scope", ctx.resourceMetadataUrl && ctx.scopes?.length ? ctx.scopes.join(" ") : undefined],
      ]);
      return json(
        401,
        {
          error: invalid ? "invalid_token" : "unauthorized",
          error_description: invalid ? "The access token is invalid" : "Authentication required",
        },
        { "www-authenticate": challenge },
      );
    }
    case "not_configured":
      return json(500, { error: "server auth not configured" });
    case "origin_forbidden":
      return rpcError(403, JSONRPC.INVALID_REQUEST, "Forbidden: Origin not allowed");
    case "insufficient_scope": {
      const challenge = bearerChallenge([
        ["realm", realm],
        ["error", "insufficient_scope"],
        ["scope", denial.scopes.join(" ")],
        ["resource_metadata", ctx.resourceMetadataUrl],
        ["error_description", denial.description],
      ]);
      return json(
        403,
        { error: "insufficient_scope", scope: denial.scopes.join(" ") },
        { "www-authenticate": challenge },
      );
    }
    case "tool_denied":
      if (denial.asError) {
        return json(200, {
          jsonrpc: "2.0",
          id: denial.id,
          error: { code: JSONRPC.FORBIDDEN, message: denial.message },
        });
      }
      return json(200, {
        jsonrpc: "2.0",
        id: denial.id,
        // 2026-07-28 results carry resultType (clients of that era refuse a result without it).
        result: {
          content: [{ type: "text", text: denial.message }],
          isError: true,
          ...(denial.resultType ? { resultType: denial.resultType } : {}),
        },
      });
    case "probe_denied":
      return json(200, {
        jsonrpc: "2.0",
        id: denial.id,
        error: { code: JSONRPC.FORBIDDEN, message: `Forbidden: a probe key may not call ${denial.method}` },
      });
    case "session_unknown":
      return rpcError(404, JSONRPC.SESSION_NOT_FOUND, "Session not found");
    case "session_missing":
      return rpcError(400, JSONRPC.INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required");
    case "parse_error":
      return rpcError(400, JSONRPC.PARSE_ERROR, denial.message ?? "Parse error: body is not valid JSON");
    case "invalid_request":
      return rpcError(400, JSONRPC.INVALID_REQUEST, `Invalid Request: ${denial.message}`);
    case "header_mismatch":
      return rpcError(400, JSONRPC.HEADER_MISMATCH, `Header mismatch: ${denial.message}`);
    case "unsupported_media_type":
      return rpcError(
        415,
        JSONRPC.INVALID_REQUEST,
        "Unsupported Media Type: Content-Type must be application/json",
      );
    case "method_not_allowed":
      return rpcError(405, JSONRPC.INVALID_REQUEST, "Method Not Allowed", { allow: denial.allow.join(", ") });
    case "body_too_large":
      return rpcError(
        413,
        JSONRPC.INVALID_REQUEST,
        `Payload Too Large: the limit is ${denial.limitBytes} bytes`,
      );
    case "rate_limited": {
      const headers: Record<string, string> = { "retry-after": String(denial.retryAfterSec) };
      if (denial.limit !== undefined && denial.windowSec !== undefined) {
        // draft-ietf-httpapi-ratelimit-headers: RateLimit-Policy and RateLimit.
        // A structured-field string (RFC 8941 §3.3.3): printable ASCII, `"` and `\` escaped.
        const name = (denial.policy ?? "default").replace(/[^\x20-\x7e]/g, "").replace(/[\\"]/g, "\\$&");
        headers["ratelimit-policy"] = `"${name}";q=${denial.limit};w=${denial.windowSec}`;
        headers.ratelimit = `"${name}";r=0;t=${denial.retryAfterSec}`;
      }
      return rpcError(429, JSONRPC.RATE_LIMITED, "Too Many Requests: rate limit exceeded", headers);
    }
    case "locked_out":
      return rpcError(429, JSONRPC.RATE_LIMITED, "Too Many Requests: too many failed authentications", {
        "retry-after": String(denial.retryAfterSec),
      });
    case "store_unavailable":
      return rpcError(503, JSONRPC.UPSTREAM, "Service Unavailable: state store unreachable", {
        "retry-after": "1",
      });
    case "capacity":
      return rpcError(503, JSONRPC.UPSTREAM, `Service Unavailable: ${denial.message}`, {
        "retry-after": "1",
      });
    case "upstream_unavailable":
      return rpcError(502, JSONRPC.UPSTREAM, "Bad Gateway: upstream MCP server unavailable");
    case "upstream_timeout":
      return rpcError(504, JSONRPC.UPSTREAM, "Gateway Timeout: upstream MCP server did not answer in time");
    case "not_found":
      return json(404, { error: "not_found" });
  }
}
