import type {
  AdmitInput,
  AdmitResult,
  RateBucket,
  RateOutcome,
  SessionOwner,
  SessionRoom,
  StateStore,
} from "../core/contracts.js";
import { McpGateError, SessionLimitError } from "../core/errors.js";
import { gcraStep } from "./gcra.js";

/** Options of {@link createMemoryStateStore}. */
export interface MemoryStateStoreOptions {
  /**
   * Most live session bindings kept. When full, a new session is refused (`SessionLimitError`,
   * scope "global"); no live binding is evicted to make room. Default 100 000.
   */
  maxSessions?: number;
  /**
   * Most live sessions of one principal (`sessions.perPrincipal`); one more is refused
   * (`SessionLimitError`, scope "principal"). Default {@link defaultSessionsPerPrincipal}.
   */
  maxSessionsPerPrincipal?: number;
  /** Most rate-limit buckets kept; expired ones are swept first, then the least recently used. Default 100 000. */
  maxBuckets?: number;
  /** Clock for bindings and sweeps (epoch ms). `admit` uses the `nowMs` it is given. Default `Date.now`. */
  now?: () => number;
}

/** The in-process state store, plus introspection used by tests and the bench. */
export interface MemoryStateStore extends StateStore {
  sessionCount(): Promise<number>;
  /** Number of rate-limit buckets currently held. */
  bucketCount(): number;
}

/** Session ids are visible ASCII (spec T-1125 §Session Management); longer ones are refused to bound memory. */
export const MAX_SESSION_ID_LENGTH = 512;

/**
 * Default `sessions.perPrincipal`: a tenth of `sessions.max`, at most 1 000, at least 1 — no
 * caller can hold more than a tenth of the store, whatever `sessions.max` is set to.
 *
 * @example defaultSessionsPerPrincipal(100_000) // 1000
 */
export function defaultSessionsPerPrincipal(maxSessions: number): number {
  return Math.max(1, Math.min(1000, Math.ceil(maxSessions / 10)));
}

/** Seconds until `deadlineMs`, at least 1 (a Retry-After value). */
export function retryAfterSec(deadlineMs: number, nowMs: number): number {
  return Math.max(1, Math.ceil((deadlineMs - nowMs) / 1000));
}

/**
 * Owners are shared between the sessions of one principal (a principal opens many sessions);
 * `sessions` holds that principal's bindings in recency order (its share, and its oldest one).
 */
interface SharedOwner {
  readonly principal: string;
  readonly display: string | undefined;
  readonly sessions: Map<string, Binding>;
}

/** One live binding: two fields, so 100k bindings stay well under 300 bytes each. */
class Binding {
  constructor(
    public owner: SharedOwner,
    public expiresAt: number,
  ) {}
}

/** How many expired entries at the head of a map one operation sweeps (amortised cleanup, no timers). */
const SWEEP_STEP = 8;

/**
 * Session bindings and GCRA rate-limit buckets in process memory: the single-instance default
 * (DESIGN.md principle 7). Bindings slide their idle deadline on every admitted request; the map's
 * insertion order is kept as recency order, so the head holds the least recently used binding
 * and, with one idle TTL, the first to expire. A full store (or a principal at its share) refuses
 * a new session rather than evicting a live one.
 * No timers: expired entries are swept a few at a time as the store is used.
 *
 * @example
 * const state = createMemoryStateStore({ maxSessions: 100_000 });
 * const gate = createGate({ verifiers, publicUrl, state });
 */
export function createMemoryStateStore(options: MemoryStateStoreOptions = {}): MemoryStateStore {
  const maxSessions = options.maxSessions ?? 100_000;
  const maxBuckets = options.maxBuckets ?? 100_000;
  const perPrincipal = options.maxSessionsPerPrincipal ?? defaultSessionsPerPrincipal(maxSessions);
  if (!Number.isInteger(perPrincipal) || perPrincipal < 1) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      "createMemoryStateStore: maxSessionsPerPrincipal must be an integer ≥ 1",
    );
  }
  if (!Number.isInteger(maxSessions) || maxSessions < 1) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      "createMemoryStateStore: maxSessions must be an integer ≥ 1",
    );
  }
  if (!Number.isInteger(maxBuckets) || maxBuckets < 1) {
    throw new McpGateError("ERR_INVALID_OPTION", "createMemoryStateStore: maxBuckets must be an integer ≥ 1");
  }
  const now = options.now ?? Date.now;
  const sessions = new Map<string, Binding>();
  const owners = new Map<string, SharedOwner>();
  /** Bucket key → TAT (ms). Insertion order = last update order. */
  const buckets = new Map<string, number>();

  function drop(id: string, binding: Binding): void {
    sessions.delete(id);
    binding.owner.sessions.delete(id);
    if (binding.owner.sessions.size === 0) owners.delete(binding.owner.principal);
  }
  /** Room for one more session of `principal` at `at`, after sweeping what has expired. */
  function room(principal: string, at: number): SessionRoom {
    sweepSessions(at, true);
    const own = owners.get(principal);
    if (own && own.sessions.size >= perPrincipal) {
      const oldest = own.sessions.values().next().value as Binding;
      return { ok: false, scope: "principal", retryAfterSec: retryAfterSec(oldest.expiresAt, at) };
    }
    if (sessions.size >= maxSessions) {
      const oldest = sessions.values().next().value as Binding;
      return { ok: false, scope: "global", retryAfterSec: retryAfterSec(oldest.expiresAt, at) };
    }
    return { ok: true };
  }
  function sweepSessions(at: number, all = false): void {
    let n = 0;
    for (const [id, b] of sessions) {
      if (b.expiresAt > at || (!all && ++n > SWEEP_STEP)) break;
      drop(id, b);
    }
  }
  function sweepBuckets(at: number): void {
    let n = 0;
    for (const [key, tat] of buckets) {
      if (tat > at || ++n > SWEEP_STEP) break;
      buckets.delete(key);
    }
  }

  function rate(list: readonly RateBucket[], at: number): RateOutcome {
    const steps = list.map((b) => gcraStep(buckets.get(b.key), b.limit, b.windowMs, at, b.cost ?? 1));
    let refused = -1;
    for (let i = 0; i < steps.length; i++) {
      if (!steps[i]!.ok && (refused < 0 || steps[i]!.retryAfterMs > steps[refused]!.retryAfterMs))
        refused = i;
    }
    if (refused >= 0) {
      const s = steps[refused]!;
      return { ok: false, bucket: list[refused]!, retryAfterMs: s.retryAfterMs, resetMs: s.resetMs };
    }
    // All admitted: only now is anything consumed (all-or-nothing across buckets).
    let tightest = 0;
    for (let i = 0; i < list.length; i++) {
      const key = list[i]!.key;
      buckets.delete(key); // re-insert at the tail: recency order
      buckets.set(key, steps[i]!.tat);
      if (steps[i]!.remaining < steps[tightest]!.remaining) tightest = i;
    }
    sweepBuckets(at);
    while (buckets.size > maxBuckets) {
      const oldest = buckets.keys().next().value as string;
      buckets.delete(oldest);
    }
    const t = steps[tightest]!;
    return { ok: true, bucket: list[tightest]!, remaining: t.remaining, resetMs: t.resetMs };
  }

  return {
    async admit(input: AdmitInput): Promise<AdmitResult> {
      const at = input.nowMs;
      const out: AdmitResult = {};
      if (input.session) {
        const { id, principal, idleTtlMs } = input.session;
        const b = sessions.get(id);
        if (!b || b.expiresAt <= at) {
          if (b) drop(id, b);
          return { session: { status: "unknown" } };
        }
        if (b.owner.principal !== principal) {
          // A mismatch consumes nothing and does not slide the owner's deadline.
          return {
            session: {
              status: "mismatch",
              ...(b.owner.display !== undefined ? { ownerDisplay: b.owner.display } : {}),
            },
          };
        }
        b.expiresAt = at + idleTtlMs;
        sessions.delete(id);
        sessions.set(id, b);
        b.owner.sessions.delete(id);
        b.owner.sessions.set(id, b);
        out.session = { status: "ok" };
      }
      if (input.buckets.length > 0) out.rate = rate(input.buckets, at);
      return out;
    },

    async bindSession(sessionId: string, owner: SessionOwner, idleTtlMs: number): Promise<void> {
      if (sessionId.length === 0 || sessionId.length > MAX_SESSION_ID_LENGTH) {
        throw new McpGateError("ERR_INVALID_OPTION", "memory state: session id is empty or too long");
      }
      const at = now();
      const previous = sessions.get(sessionId);
      if (previous) drop(sessionId, previous);
      const free = room(owner.principal, at);
      if (!free.ok) throw new SessionLimitError(free.scope, free.retryAfterSec);
      let shared = owners.get(owner.principal);
      if (!shared) {
        shared = { principal: owner.principal, display: owner.display, sessions: new Map() };
        owners.set(owner.principal, shared);
      }
      const binding = new Binding(shared, at + idleTtlMs);
      shared.sessions.set(sessionId, binding);
      sessions.set(sessionId, binding);
    },

    async sessionRoom(principal: string): Promise<SessionRoom> {
      return room(principal, now());
    },

    async removeSession(sessionId: string): Promise<void> {
      const b = sessions.get(sessionId);
      if (b) drop(sessionId, b);
    },

    /** Live bindings; expired ones are swept first, so the count is exact when one idle TTL is used. */
    async sessionCount(): Promise<number> {
      sweepSessions(now(), true);
      return sessions.size;
    },

    bucketCount(): number {
      return buckets.size;
    },

    async close(): Promise<void> {
      sessions.clear();
      owners.clear();
      buckets.clear();
    },
  };
}
