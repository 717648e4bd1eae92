/**
 * The contracts between the gate and the parts plugged into it (state stores, authorizers, rate-limit
 * planners, guards, observers). They live in core so that stores/, authz/ and observe/ can implement
 * them without importing the gate, which sits above them (DESIGN.md §3).
 */
import type { AuditEvent } from "./audit-event.js";
import type { Identity } from "./identity.js";
import type { InspectedMessage } from "./message.js";
import type { Denial } from "./outcome.js";

/** A request as the gate sees it, framework-neutral. Header names are lower-case. */
export interface GateRequest {
  method: string;
  headers: Record<string, string | string[] | undefined>;
  remoteAddress?: string;
  /** The raw body (POST), already bounded by the adapter. */
  bodyText?: string;
  /** A body some earlier middleware already parsed (e.g. `express.json()`). */
  parsedBody?: unknown;
  requestId?: string;
}

/** Session state shared by the gate (issue: identity-bound sessions). */
export type SessionCheck = "ok" | "unknown" | "mismatch";

/**
 * The state the pipeline keeps between requests: session bindings and rate-limit buckets, in
 * memory or Redis. `admit` does the session check and the rate-limit update together, so that a
 * Redis implementation can do both in ONE round trip.
 */
export interface StateStore {
  init?(): Promise<void>;
  admit(input: AdmitInput): Promise<AdmitResult>;
  /**
   * Bind a minted session to its owner. Throws `SessionLimitError` (core/errors.ts) when the owner
   * already holds its share of live sessions or the store is full: a live session of another
   * principal is never evicted to make room (issue 14 item 3).
   */
  bindSession(sessionId: string, owner: SessionOwner, idleTtlMs: number): Promise<void>;
  /**
   * Whether `principal` could open one more session now: checked before an `initialize` is
   * forwarded, so that a refusal (429 for the caller's share, 503 when the store is full, both
   * with `Retry-After`) comes before the upstream mints a session. `bindSession` checks again.
   */
  sessionRoom?(principal: string): Promise<SessionRoom>;
  removeSession(sessionId: string): Promise<void>;
  /** Number of live sessions (for metrics). */
  sessionCount?(): Promise<number>;
  close?(): Promise<void>;
}

/** Answer of {@link StateStore.sessionRoom}. */
export type SessionRoom = { ok: true } | { ok: false; scope: "principal" | "global"; retryAfterSec: number };

export interface SessionOwner {
  principal: string;
  display?: string;
}

export interface RateBucket {
  /** Store key, e.g. "rl:p:key:7Hq2xK9a" or "rl:t:key:7Hq2xK9a:delete_*". */
  key: string;
  limit: number;
  windowMs: number;
  /** Name for the RateLimit-Policy header. */
  policy: string;
  /**
   * Units this request takes from the bucket (default 1). A 2025-03-26 batch of five `tools/call`
   * costs 5, so batching cannot bypass a limit. A request whose cost exceeds what is left is refused
   * whole and takes nothing.
   */
  cost?: number;
}

export interface AdmitInput {
  session?: { id: string; principal: string; idleTtlMs: number };
  buckets: RateBucket[];
  nowMs: number;
}

export interface AdmitResult {
  session?: { status: SessionCheck; ownerDisplay?: string };
  /** Undefined when no bucket was checked (or the session check failed: then nothing is consumed). */
  rate?: RateOutcome;
}

/**
 * Result of the rate-limit part of `admit`. Buckets are all-or-nothing: when one refuses, none is
 * consumed. `bucket` is the refusing bucket with the longest wait, or, when admitted, the bucket
 * with the fewest requests left (what the `RateLimit` header reports).
 */
export type RateOutcome =
  | { ok: true; bucket?: RateBucket; remaining?: number; resetMs?: number }
  | { ok: false; bucket: RateBucket; retryAfterMs: number; resetMs?: number };

/**
 * Per-message authorization (issue: per-tool authorization). A denial's `scopes` are those that
 * would allow the operation; empty when no scope can (no rule matched, a malformed name): such a
 * denial is never answered with a 403 step-up, which the client could not satisfy.
 */
export type AuthzDecision = { allow: true } | { allow: false; scopes: string[]; reason: string };

export interface Authorizer {
  authorize(identity: Identity, message: InspectedMessage): AuthzDecision;
  /** True when list results must be filtered for this identity. */
  filtersLists(identity: Identity): boolean;
  /** Whether a list item (tool/prompt by name, resource by uri) is visible to the identity. */
  isVisible(identity: Identity, kind: "tools" | "resources" | "prompts", name: string): boolean;
  /** How a denial is answered for this identity. */
  onDenied(identity: Identity): "tool-error" | "step-up";
  /** Scopes to advertise (PRM `scopes_supported`). */
  scopesSupported(): string[];
  /**
   * The `scope` of 401 challenges: the least a client needs to start (`auth.challengeScopes`);
   * when absent, `scopesSupported()`.
   */
  challengeScopes?(): string[];
}

/** Per-caller rate limits: which buckets a request consumes. */
export interface RateLimitPlanner {
  bucketsFor(identity: Identity, messages: readonly InspectedMessage[]): RateBucket[];
  readonly failOpen: boolean;
}

/** Credential-guessing defence (issue: observability and defence). */
export interface Guard {
  /** Seconds until the source may try again, or 0. */
  lockedFor(ip: string): Promise<number>;
  recordFailure(ip: string): Promise<number>;
  /** Which address a request comes from (honours trustProxy). */
  sourceOf(remoteAddress: string | undefined, headers: GateRequest["headers"]): string;
}

/** One finished MCP request, as the front door (http/front-door.ts) reports it. */
export interface RequestSummary {
  requestId: string;
  httpMethod: string;
  /** The first JSON-RPC method of the body, if any. */
  rpcMethod?: string;
  /** The tool of the first `tools/call`, if any. */
  tool?: string;
  /** Tools of the `tools/call` messages that went upstream (denied ones are reported by `decision`). */
  forwardedTools?: string[];
  era?: string;
  /** The caller's display name (key prefix, issuer#subject); never a secret. */
  principal?: string;
  /** The mount (upstream) name, when the gateway serves several. */
  mount?: string;
  status: number;
  /** "allow", the denial kind, or the upstream failure class. */
  decision: string;
  latencyMs: number;
  upstreamMs?: number;
}

/** Where the gate reports what happened. All optional. */
export interface GateObserver {
  audit?(event: AuditEvent): void;
  authFailure?(reason: string): void;
  decision?(d: { method?: string; tool?: string; decision: string }): void;
  storeError?(store: string, err: unknown): void;
  /** Once per finished request (logs, metrics, 401-spike detection). */
  request?(summary: RequestSummary): void;
}

export type { Denial };
