import type { CredentialVerifier } from "../authn/verifier.js";
import type { ChallengeContext, HttpResponseSpec } from "../core/challenge.js";
import type {
  Authorizer,
  GateObserver,
  GateRequest,
  Guard,
  RateLimitPlanner,
  StateStore,
} from "../core/contracts.js";
import type { Identity } from "../core/identity.js";
import type { InspectedMessage } from "../core/message.js";
import type { Denial } from "../core/outcome.js";
import type { Era } from "../mcp/era.js";

/** Options of {@link createGate}. Resolved once, frozen. */
export interface GateOptions {
  /** Tried in order; an empty list means every request is refused with 500 (fail closed). */
  verifiers: CredentialVerifier[];
  /** Canonical resource URI (RFC 9728 `resource`, default JWT audience). */
  publicUrl: string;
  /** Allowed Origin values. Absent Origin is always allowed; default: the publicUrl's origin. */
  origins?: string[];
  /** Body limit in bytes (default 4 MiB), enforced by the adapters that read the body. */
  maxBodyBytes?: number;
  realm?: string;
  /**
   * Session bindings and rate-limit buckets. Default: an in-memory store (100 000 sessions, least
   * recently used evicted), so sessions are identity-bound even when nothing is configured.
   */
  state?: StateStore;
  sessionIdleTtlMs?: number;
  authorizer?: Authorizer;
  rateLimits?: RateLimitPlanner;
  guard?: Guard;
  observer?: GateObserver;
  /**
   * Whether a missing Mcp-Session-Id on a non-initialize 2025-era request is refused with 400.
   * "auto" (default): once the upstream has minted a session id.
   */
  requireSession?: "auto" | boolean;
}

/** What the gate learned about an admitted request; the transport forwards it and reports back. */
export interface Admission {
  requestId: string;
  identity: Identity;
  /** The verified credential, for in-process SDK handlers (`req.auth.token`). Never forwarded. */
  token: string;
  era: Era;
  messages: InspectedMessage[];
  batch: boolean;
  /** The POST body as parsed by the gate (adapters hand it on instead of parsing it again). */
  body?: unknown;
  sessionId?: string;
  /** True when this request carries an `initialize` request (a session may be minted). */
  initialize: boolean;
  /**
   * Messages answered by the gate itself (denied tool calls in a batch); `forwardBody` then holds
   * the remaining messages. Empty in the common case.
   */
  localResponses: Array<Record<string, unknown>>;
  /** The body to forward when it differs from the original (some batch elements were answered locally). */
  forwardBody?: string;
  /** Set when list results must be filtered for this caller. */
  listFilter?: (kind: "tools" | "resources" | "prompts", name: string) => boolean;
  ip: string;
}

export type GateDecision =
  | { ok: true; admission: Admission }
  | { ok: false; denial: Denial; response: HttpResponseSpec; admission?: Admission };

export interface Gate {
  readonly options: Readonly<GateOptions>;
  readonly challenge: ChallengeContext;
  /** True when an OAuth verifier is configured (PRM served, `resource_metadata` in challenges). */
  readonly oauth: boolean;
  admit(req: GateRequest): Promise<GateDecision>;
  /** Report the upstream's response head: binds minted sessions, forgets ended ones. */
  onResponse(
    admission: Admission,
    res: { status: number; sessionId?: string; method: string },
  ): Promise<void>;
  /** Render a refusal (e.g. upstream failures) with this gate's challenge context. */
  render(denial: Denial): HttpResponseSpec;
}
