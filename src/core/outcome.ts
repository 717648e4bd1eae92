/**
 * Every way a request can be refused, as a value. `core/challenge.ts` is the one place that turns
 * these into HTTP status, headers and body (DESIGN.md §2 table).
 */
export type AuthFailureReason =
  | "missing"
  | "malformed"
  | "invalid"
  | "expired"
  | "revoked"
  | "unknown_key"
  | "bad_checksum"
  | "wrong_issuer"
  | "wrong_audience"
  | "bad_signature"
  | "no_key"
  | "inactive";

export type JsonRpcId = string | number | null;

export type Denial =
  | { kind: "unauthenticated"; reason: AuthFailureReason; description?: string }
  | { kind: "not_configured" }
  | { kind: "origin_forbidden" }
  | { kind: "insufficient_scope"; scopes: string[]; description?: string }
  /** `asError`: answer with a JSON-RPC error (denied resources/read, prompts/get, …: only tools/call has isError). */
  | { kind: "tool_denied"; id: JsonRpcId; message: string; asError?: boolean; resultType?: "complete" }
  | { kind: "probe_denied"; id: JsonRpcId; method: string }
  | { kind: "session_unknown" }
  | { kind: "session_missing" }
  | { kind: "parse_error"; message?: string }
  | { kind: "invalid_request"; message: string }
  | { kind: "header_mismatch"; message: string }
  | { kind: "unsupported_media_type" }
  | { kind: "method_not_allowed"; allow: string[] }
  | { kind: "body_too_large"; limitBytes: number }
  | { kind: "rate_limited"; retryAfterSec: number; limit?: number; windowSec?: number; policy?: string }
  | { kind: "locked_out"; retryAfterSec: number }
  /**
   * A new session refused (issue 14 item 3): the caller holds its share of live sessions
   * (`principal`, 429) or the store is full (`global`, 503). No live session is evicted for it.
   */
  | { kind: "session_limit"; scope: "principal" | "global"; retryAfterSec: number }
  /**
   * The caller holds its share of an HTTP upstream's connections (requests, or streams, in flight),
   * or of the memory for answers not yet taken by their clients (unread answers): 429, so one
   * caller's slow calls, open streams or unread answers never leave others without.
   */
  | { kind: "in_flight_limit"; what: "requests" | "streams" | "unread answers"; retryAfterSec: number }
  | { kind: "store_unavailable" }
  /** Full (503, `Retry-After`). `ran`: the call had run when its answer was dropped — no `Retry-After`. */
  | { kind: "capacity"; message: string; ran?: true }
  | { kind: "upstream_unavailable" }
  | { kind: "upstream_timeout" }
  /** The upstream answered 401/403: its credential problem, never a challenge for our caller. */
  | { kind: "upstream_credentials" }
  /** The upstream's answer could not be relayed safely (bad JSON, a redirect, an unfilterable list). */
  | { kind: "upstream_malformed" }
  /** The upstream identity hook (assertion, token exchange) failed: nothing was forwarded. */
  | { kind: "identity_unavailable" }
  /** The caller's credential expired (or was revoked) while its stream was open. */
  | { kind: "credential_expired" }
  /** The client did not read its answers and the gateway's bound for it was reached. */
  | { kind: "client_too_slow" }
  | { kind: "not_acceptable"; accept: string }
  | { kind: "stream_conflict" }
  | { kind: "not_found" }
  /** Something failed that should not have: 500, no detail. */
  | { kind: "internal_error" };

/** The kinds of {@link Denial}. */
export type DenialKind = Denial["kind"];

/** Reasons that mean "a credential was presented but is not acceptable" (RFC 6750 invalid_token). */
export function isInvalidToken(reason: AuthFailureReason): boolean {
  return reason !== "missing";
}
