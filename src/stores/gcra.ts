/**
 * GCRA (generic cell rate algorithm, the "virtual scheduling" form of a token bucket): one number
 * per bucket, the theoretical arrival time (TAT). A bucket of `limit` requests per `windowMs`
 * emits one request every `T = windowMs / limit` and tolerates a burst of `limit`. The Redis Lua
 * script in redis-state.ts follows exactly this arithmetic, so both stores behave the same.
 */

/** Outcome of one GCRA step; `tat` is the value to store when `ok` (nothing is stored otherwise). */
export interface GcraStep {
  ok: boolean;
  /** New TAT to store (only meaningful when ok). */
  tat: number;
  /** Requests still allowed right now after this one (0 when refused). */
  remaining: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
  /** Milliseconds until one more request would be allowed (0 when ok). */
  retryAfterMs: number;
}

/**
 * Compute one GCRA step without storing anything.
 *
 * @example
 * const s = gcraStep(undefined, 10, 60_000, Date.now()); // { ok: true, remaining: 9, … }
 * gcraStep(undefined, 10, 60_000, Date.now(), 11); // { ok: false, … }: more than the bucket holds
 */
export function gcraStep(
  storedTat: number | undefined,
  limit: number,
  windowMs: number,
  nowMs: number,
  cost = 1,
): GcraStep {
  const interval = windowMs / limit;
  const tat = storedTat === undefined || storedTat < nowMs ? nowMs : storedTat;
  // A request of cost n takes n emission intervals at once (a 2025-03-26 batch of n calls).
  const newTat = tat + interval * cost;
  const allowAt = newTat - windowMs;
  if (allowAt > nowMs) {
    return { ok: false, tat, remaining: 0, resetMs: tat - nowMs, retryAfterMs: allowAt - nowMs };
  }
  // 1e-9: the division is exact in theory; keep float noise from losing a whole request.
  const remaining = Math.max(0, Math.floor((nowMs + windowMs - newTat) / interval + 1e-9));
  return { ok: true, tat: newTat, remaining, resetMs: newTat - nowMs, retryAfterMs: 0 };
}
