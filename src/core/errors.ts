/**
 * One error base class with stable codes (documented in docs/errors.md; a test keeps the two in
 * step). Expected outcomes of a request (a wrong key, an expired token) are values, not errors:
 * these are for misuse, misconfiguration and infrastructure failures.
 */
export const ERROR_CODES = {
  ERR_CONFIG_INVALID: "The configuration file or options failed validation.",
  ERR_CONFIG_NOT_FOUND: "The configuration file does not exist or cannot be read.",
  ERR_AUTH_NOT_CONFIGURED: "No credential verifier is configured; every request is refused with 500.",
  ERR_INVALID_OPTION: "A factory was called with an invalid option.",
  ERR_INVALID_DURATION: "A duration string is not of the form 500ms, 10s, 30m, 24h or 90d.",
  ERR_STORE_UNAVAILABLE: "A key, session or rate-limit store could not be reached.",
  ERR_KEY_NOT_FOUND: "No API key has the given id.",
  ERR_KEY_FORMAT: "A string is not a well-formed mcpgate API key.",
  ERR_SCOPE_SYNTAX: "A scope contains characters outside RFC 6749 §3.3 scope-token syntax.",
  ERR_UPSTREAM_UNAVAILABLE: "The upstream MCP server refused the connection or failed.",
  ERR_UPSTREAM_TIMEOUT: "The upstream MCP server did not answer in time.",
  ERR_JWKS_UNAVAILABLE: "No signing key could be obtained from the issuer's JWKS.",
  ERR_ISSUER_DISCOVERY: "The issuer's authorization server metadata could not be fetched or is invalid.",
  ERR_INTROSPECTION: "The token introspection endpoint failed or answered malformed data.",
  ERR_STDIO_SPAWN: "A stdio upstream process could not be started.",
  ERR_USAGE: "A command line was invalid.",
  ERR_SESSION_LIMIT: "A new session was refused: the caller's share of sessions, or the store, is full.",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Base class of every error mcpgate throws on purpose. Messages never contain a secret.
 *
 * @example
 * throw new McpGateError("ERR_STORE_UNAVAILABLE", "key store unreachable", { cause: err });
 */
export class McpGateError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "McpGateError";
    this.code = code;
  }
}

/**
 * A new session refused because the caller holds `sessions.perPrincipal` live sessions
 * (`scope: "principal"`, answered 429) or the store holds `sessions.max` (`scope: "global"`, 503).
 * Never evicting another principal's live session is the point (issue 14 item 3): the caller is
 * told when a slot frees up instead.
 */
export class SessionLimitError extends McpGateError {
  constructor(
    readonly scope: "principal" | "global",
    /** Seconds until the oldest session in the way idles out (at least 1). */
    readonly retryAfterSec: number,
  ) {
    super(
      "ERR_SESSION_LIMIT",
      scope === "principal" ? "too many live sessions for this caller" : "too many live sessions",
    );
    this.name = "SessionLimitError";
  }
}

/** True when `err` is an McpGateError, optionally with the given code. */
export function isMcpGateError(err: unknown, code?: ErrorCode): err is McpGateError {
  return err instanceof McpGateError && (code === undefined || err.code === code);
}
