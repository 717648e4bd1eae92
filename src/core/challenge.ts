import type { Denial, JsonRpcId } from "./outcome.js";

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

/**
 * JSON-RPC error codes we emit, one per meaning (docs/errors.md lists them; a test keeps both in
 * step). Custom codes stay outside -32768..-32000 (spec B-0728).
 */
export const JSONRPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  HEADER_MISMATCH: -32020,
  /** Application range: a gateway-side refusal of one message. */
  FORBIDDEN: -31001,
  RATE_LIMITED: -31002,
  SESSION_NOT_FOUND: -31003,
  UPSTREAM_UNAVAILABLE: -31004,
  UPSTREAM_TIMEOUT: -31005,
  UPSTREAM_CREDENTIALS: -31006,
  UPSTREAM_MALFORMED: -31007,
  IDENTITY_UNAVAILABLE: -31008,
  SERVICE_UNAVAILABLE: -31009,
  SESSION_REQUIRED: -31010,
  CREDENTIAL_EXPIRED: -31011,
  CLIENT_TOO_SLOW: -31012,
  ORIGIN_FORBIDDEN: -31013,
  PAYLOAD_TOO_LARGE: -31014,
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
      return rpcError(403, JSONRPC.ORIGIN_FORBIDDEN, "Forbidden: Origin not allowed");
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
      return rpcError(400, JSONRPC.SESSION_REQUIRED, "Bad Request: Mcp-Session-Id header is required");
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
        JSONRPC.PAYLOAD_TOO_LARGE,
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
    case "in_flight_limit":
      return rpcError(
        429,
        JSONRPC.RATE_LIMITED,
        `Too Many Requests: too many ${denial.what} in flight for this caller`,
        { "retry-after": String(denial.retryAfterSec) },
      );
    case "session_limit":
      // The caller's own share is a 429 (it can end sessions); a full store is the gateway's 503.
      return denial.scope === "principal"
        ? rpcError(429, JSONRPC.RATE_LIMITED, "Too Many Requests: too many live sessions for this caller", {
            "retry-after": String(denial.retryAfterSec),
          })
        : rpcError(503, JSONRPC.SERVICE_UNAVAILABLE, "Service Unavailable: too many live sessions", {
            "retry-after": String(denial.retryAfterSec),
          });
    case "store_unavailable":
    case "capacity":
    case "upstream_unavailable":
    case "upstream_timeout":
    case "upstream_credentials":
    case "upstream_malformed":
    case "identity_unavailable":
    case "client_too_slow": {
      const e = failureOf(denial);
      // A dropped answer (its call ran) is not to be retried blindly: no Retry-After for it.
      const ran = denial.kind === "client_too_slow" || (denial.kind === "capacity" && denial.ran === true);
      const retry = e.status === 503 && !ran;
      return rpcError(e.status, e.code, e.message, retry ? { "retry-after": "1" } : {});
    }
    case "credential_expired": {
      // A 401 like any other for a credential no longer valid (RFC 6750 §3, DESIGN.md §2): the
      // challenge says invalid_token and where to get a new one; the body says it happened mid-request.
      const e = failureOf(denial);
      return rpcError(e.status, e.code, e.message, {
        "www-authenticate": bearerChallenge([
          ["realm", realm],
          ["error", "invalid_token"],
          ["error_description", "The access token is invalid"],
          ["resource_metadata", ctx.resourceMetadataUrl],
        ]),
      });
    }
    case "not_acceptable":
      return rpcError(406, JSONRPC.INVALID_REQUEST, `Not Acceptable: Client must accept ${denial.accept}`);
    case "stream_conflict":
      return rpcError(409, JSONRPC.INVALID_REQUEST, "Conflict: Only one SSE stream is allowed per session");
    case "not_found":
      return json(404, { error: "not_found" });
    case "internal_error":
      return json(500, { error: "internal error" });
  }
}

/** Failures that happen after admission: they may also answer one message inside an open stream. */
export type FailureDenial = Extract<
  Denial,
  {
    kind:
      | "store_unavailable"
      | "capacity"
      | "upstream_unavailable"
      | "upstream_timeout"
      | "upstream_credentials"
      | "upstream_malformed"
      | "identity_unavailable"
      | "credential_expired"
      | "client_too_slow";
  }
>;

function failureOf(d: FailureDenial): { status: number; code: number; message: string } {
  switch (d.kind) {
    case "store_unavailable":
      return {
        status: 503,
        code: JSONRPC.SERVICE_UNAVAILABLE,
        message: "Service Unavailable: state store unreachable",
      };
    case "capacity":
      return { status: 503, code: JSONRPC.SERVICE_UNAVAILABLE, message: `Service Unavailable: ${d.message}` };
    case "upstream_unavailable":
      return {
        status: 502,
        code: JSONRPC.UPSTREAM_UNAVAILABLE,
        message: "Bad Gateway: upstream MCP server unavailable",
      };
    case "upstream_timeout":
      return {
        status: 504,
        code: JSONRPC.UPSTREAM_TIMEOUT,
        message: "Gateway Timeout: upstream MCP server did not answer in time",
      };
    case "upstream_credentials":
      return {
        status: 502,
        code: JSONRPC.UPSTREAM_CREDENTIALS,
        message: "Bad Gateway: the upstream MCP server refused the gateway's credentials",
      };
    case "upstream_malformed":
      return {
        status: 502,
        code: JSONRPC.UPSTREAM_MALFORMED,
        message: "Bad Gateway: malformed upstream response",
      };
    case "identity_unavailable":
      return {
        status: 502,
        code: JSONRPC.IDENTITY_UNAVAILABLE,
        message: "Bad Gateway: the caller's identity could not be conveyed to the upstream",
      };
    case "credential_expired":
      return {
        status: 401,
        code: JSONRPC.CREDENTIAL_EXPIRED,
        message: "Credential expired or revoked while the stream was open; reconnect with a valid one",
      };
    case "client_too_slow":
      return {
        status: 503,
        code: JSONRPC.CLIENT_TOO_SLOW,
        message: "Service Unavailable: the client did not read its answers in time",
      };
  }
}

/**
 * A failure answering one JSON-RPC request inside an open stream (SSE event or JSON array
 * element): the same code and message as {@link renderDenial} gives the whole response.
 *
 * @example renderRpcError(7, { kind: "upstream_unavailable" }) // {"jsonrpc":"2.0","id":7,"error":{"code":-31004,…}}
 */
export function renderRpcError(id: JsonRpcId, denial: FailureDenial): string {
  const e = failureOf(denial);
  return JSON.stringify({ jsonrpc: "2.0", id, error: { code: e.code, message: e.message } });
}

/**
 * The gate's answer to one refused request inside a batch (JSON-RPC §6: each element answered):
 * a tool call gets an `isError` result (DESIGN.md §2, API-key identities), anything else a
 * JSON-RPC error -31001.
 *
 * @example refusedMessageAnswer(3, "tools/call", "needs admin") // { jsonrpc, id: 3, result: { isError: true, … } }
 */
export function refusedMessageAnswer(
  id: JsonRpcId,
  method: string | undefined,
  message: string,
  resultType?: "complete",
): Record<string, unknown> {
  if (method === "tools/call") {
    const result: Record<string, unknown> = { content: [{ type: "text", text: message }], isError: true };
    // 2026-07-28 results carry resultType (clients of that era refuse a result without it).
    if (resultType) result.resultType = resultType;
    return { jsonrpc: "2.0", id, result };
  }
  return { jsonrpc: "2.0", id, error: { code: JSONRPC.FORBIDDEN, message } };
}
