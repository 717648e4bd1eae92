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
import type { ResponsePlan } from "./plan.js";

/** Options of {@link createGate}. Resolved once, frozen. */
export interface GateOptions {
  /** Tried in order; an empty list means every request is refused with 500 (fail closed). */
  verifiers: CredentialVerifier[];
  /** Canonical resource URI (RFC 9728 `resource`, default JWT audience). */
  publicUrl: string;
  /** Allowed Origin values. Absent Origin is always allowed; default: the publicUrl's origin. */
  origins?: string[];
  /** Body limit in bytes (default 4 MiB), enforced by the front door before the body is kept. */
  maxBodyBytes?: number;
  realm?: string;
  /**
   * Session bindings and rate-limit buckets. Default: an in-memory store (100 000 sessions, least
   * recently used evicted), so sessions are identity-bound even when nothing is configured.
   */
  state?: StateStore;
  /**
   * Sessions of this gate live under this name in the state store (the mount's name when one
   * gateway serves several upstreams): a session minted behind one mount is unknown (404) on another.
   */
  sessionScope?: string;
  sessionIdleTtlMs?: number;
  authorizer?: Authorizer;
  rateLimits?: RateLimitPlanner;
  guard?: Guard;
  /** Audit, metrics, request logs and 401-spike detection (`createObserver` from `mcpgate/observe`). */
  observer?: GateObserver;
  /**
   * Whether a missing Mcp-Session-Id on a non-initialize 2025-era request is refused with 400.
   * "auto" (default): once the upstream has minted a session id.
   */
  requireSession?: "auto" | boolean;
  /**
   * Extra lifetime checks for open streams (e.g. key revocation): each returns a signal that fires
   * when the admission's credential stops being acceptable; `until` fires when the response ends
   * (so a watcher can stop watching). {@link Gate.watch} combines them with the credential's expiry.
   */
  watchers?: ReadonlyArray<(auth: Authenticated, until: AbortSignal) => AbortSignal | undefined>;
}

/** Who is calling, established from the request's headers alone (before any body byte is kept). */
export interface Authenticated {
  readonly requestId: string;
  readonly identity: Identity;
  /** The verified credential, for in-process SDK handlers (`req.auth.token`). Never forwarded. */
  readonly token: string;
  readonly ip: string;
  /** Upper-case HTTP method. */
  readonly method: string;
}

/** What the gate learned about an admitted request. Frozen: nothing changes it after admission. */
export interface Admission extends Authenticated {
  readonly era: Era;
  /** Every message of the client's body, as inspected (the plan says which go upstream). */
  readonly messages: readonly InspectedMessage[];
  readonly batch: boolean;
  /** The POST body as parsed by the gate (adapters hand it on instead of parsing it again). */
  readonly body?: unknown;
  readonly sessionId?: string;
  /** True when this request carries an `initialize` request (a session may be minted). */
  readonly initialize: boolean;
}

export type GateDecision =
  | { ok: true; admission: Admission; plan: ResponsePlan }
  | { ok: false; denial: Denial; response: HttpResponseSpec; admission?: Admission };

export type AuthenticateResult =
  | { ok: true; auth: Authenticated }
  | { ok: false; denial: Denial; response: HttpResponseSpec };

export interface Gate {
  readonly options: Readonly<GateOptions>;
  readonly challenge: ChallengeContext;
  /** True when an OAuth verifier is configured (PRM served, `resource_metadata` in challenges). */
  readonly oauth: boolean;
  /**
   * Steps 1–3 on the headers alone: origin, method, guard, credential. The front door calls this
   * before reading the body (and before `100 Continue`).
   */
  authenticate(req: GateRequest): Promise<AuthenticateResult>;
  /** The rest of the pipeline for an authenticated request, with its (bounded) body. */
  admitAuthenticated(auth: Authenticated, req: GateRequest): Promise<GateDecision>;
  /** The whole pipeline in one call (authenticate, then admitAuthenticated). */
  admit(req: GateRequest): Promise<GateDecision>;
  /** Report the upstream's response head: binds minted sessions, forgets ended ones. */
  onResponse(
    admission: Admission,
    res: { status: number; sessionId?: string; method: string },
  ): Promise<void>;
  /**
   * A signal that fires when the admission's credential stops being acceptable: at the identity's
   * `expiresAt`, or when a watcher (e.g. key revocation) says so. Open streams end on it.
   * Undefined when nothing can end it early (no expiry, no watcher).
   */
  watch(admission: Authenticated, until?: AbortSignal): AbortSignal | undefined;
  /** Render a refusal (e.g. upstream failures) with this gate's challenge context. */
  render(denial: Denial): HttpResponseSpec;
}
