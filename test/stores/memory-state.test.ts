import { describe, expect, it } from "vitest";
import type { RateBucket } from "../../src/core/contracts.js";
import { gcraStep } from "../../src/stores/gcra.js";
import { createMemoryStateStore } from "../../src/stores/memory-state.js";

const A = { principal: "key:AAAAAAAA", display: "mcpg_AAAAAAAA" };
const B = { principal: "key:BBBBBBBB", display: "mcpg_BBBBBBBB" };
const bucket = (key: string, limit: number, windowMs: number): RateBucket => ({
  key,
  limit,
  windowMs,
  policy: `${key};q=${limit};w=${windowMs / 1000}`,
});

function clock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, set: (v: number) => (t = v), advance: (ms: number) => (t += ms) };
}

describe("memory state store: sessions", () => {
  it("admits the principal a session is bound to and refuses another one as a mismatch naming the owner", async () => {
    const c = clock();
    const s = createMemoryStateStore({ now: c.now });
    await s.bindSession("sid-1", A, 60_000);
    const ok = await s.admit({
      session: { id: "sid-1", principal: A.principal, idleTtlMs: 60_000 },
      buckets: [],
      nowMs: c.now(),
    });
    expect(ok.session).toEqual({ status: "ok" });
    const bad = await s.admit({
      session: { id: "sid-1", principal: B.principal, idleTtlMs: 60_000 },
      buckets: [],
      nowMs: c.now(),
    });
    expect(bad.session).toEqual({ status: "mismatch", ownerDisplay: A.display });
  });

  it("answers unknown for an id never bound and for a removed one", async () => {
    const s = createMemoryStateStore();
    const now = Date.now();
    expect(
      (
        await s.admit({
          session: { id: "nope", principal: A.principal, idleTtlMs: 1000 },
          buckets: [],
          nowMs: now,
        })
      ).session?.status,
    ).toBe("unknown");
    await s.bindSession("sid", A, 60_000);
    await s.removeSession("sid");
    expect(
      (
        await s.admit({
          session: { id: "sid", principal: A.principal, idleTtlMs: 1000 },
          buckets: [],
          nowMs: now,
        })
      ).session?.status,
    ).toBe("unknown");
    expect(await s.sessionCount()).toBe(0);
  });

  it("expires a binding after the idle TTL to the millisecond, and slides the deadline on each use", async () => {
    const c = clock();
    const s = createMemoryStateStore({ now: c.now });
    await s.bindSession("sid", A, 1000);
    const check = () =>
      s.admit({
        session: { id: "sid", principal: A.principal, idleTtlMs: 1000 },
        buckets: [],
        nowMs: c.now(),
      });
    c.advance(999);
    expect((await check()).session?.status).toBe("ok"); // slides to t0+1999
    c.advance(999);
    expect((await check()).session?.status).toBe("ok"); // slides to t0+2998
    c.advance(1000);
    expect((await check()).session?.status).toBe("unknown");
  });

  it("a mismatch does not slide the owner's idle deadline", async () => {
    const c = clock();
    const s = createMemoryStateStore({ now: c.now });
    await s.bindSession("sid", A, 1000);
    c.advance(900);
    await s.admit({
      session: { id: "sid", principal: B.principal, idleTtlMs: 1000 },
      buckets: [],
      nowMs: c.now(),
    });
    c.advance(100);
    expect(
      (
        await s.admit({
          session: { id: "sid", principal: A.principal, idleTtlMs: 1000 },
          buckets: [],
          nowMs: c.now(),
        })
      ).session?.status,
    ).toBe("unknown");
  });

  it("sweeps expired bindings so sessionCount reports only live ones", async () => {
    const c = clock();
    const s = createMemoryStateStore({ now: c.now });
    for (let i = 0; i < 50; i++) await s.bindSession(`s${i}`, A, 1000);
    c.advance(500);
    await s.bindSession("late", A, 1000);
    expect(await s.sessionCount()).toBe(51);
    c.advance(600);
    expect(await s.sessionCount()).toBe(1);
  });

  it("refuses to bind an empty or oversized session id", async () => {
    const s = createMemoryStateStore();
    await expect(s.bindSession("", A, 1000)).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
    await expect(s.bindSession("x".repeat(513), A, 1000)).rejects.toMatchObject({
      code: "ERR_INVALID_OPTION",
    });
  });

  it("throws at construction for a maxSessions that is not a positive integer", () => {
    expect(() => createMemoryStateStore({ maxSessions: 0 })).toThrow(/maxSessions/);
    expect(() => createMemoryStateStore({ maxBuckets: 1.5 })).toThrow(/maxBuckets/);
  });
});

describe("memory state store: GCRA rate limits", () => {
  it("allows exactly `limit` requests in a burst, then refuses with the wait until the next one", async () => {
    const c = clock();
    const s = createMemoryStateStore({ now: c.now });
    const b = bucket("rl:p:A", 5, 10_000);
    const results = [];
    for (let i = 0; i < 6; i++) results.push((await s.admit({ buckets: [b], nowMs: c.now() })).rate);
    expect(results.slice(0, 5).map((r) => r?.ok)).toEqual([true, true, true, true, true]);
    expect(results.slice(0, 5).map((r) => (r?.ok ? r.remaining : -1))).toEqual([4, 3, 2, 1, 0]);
    expect(results[5]).toMatchObject({ ok: false, retryAfterMs: 2000, bucket: b });
    c.advance(1999);
    expect((await s.admit({ buckets: [b], nowMs: c.now() })).rate?.ok).toBe(false);
    c.advance(1);
    expect((await s.admit({ buckets: [b], nowMs: c.now() })).rate?.ok).toBe(true);
  });

  it("consumes no bucket when one of several refuses, and reports the refusing one", async () => {
    const c = clock();
    const s = createMemoryStateStore({ now: c.now });
    const principal = bucket("rl:p:A", 10, 60_000);
    const tool = bucket("rl:t:A:expensive_*", 1, 60_000);
    expect((await s.admit({ buckets: [principal, tool], nowMs: c.now() })).rate).toMatchObject({
      ok: true,
      bucket: tool,
      remaining: 0,
    });
    for (let i = 0; i < 5; i++) {
      expect((await s.admit({ buckets: [principal, tool], nowMs: c.now() })).rate).toMatchObject({
        ok: false,
        bucket: tool,
      });
    }
    // Only the first request consumed from the principal bucket: 9 remain.
    const r = (await s.admit({ buckets: [principal], nowMs: c.now() })).rate;
    expect(r).toMatchObject({ ok: true, remaining: 8 });
  });

  it("charges a batch its cost, and refuses a request costing more than is left without taking anything", async () => {
    const c = clock();
    const s = createMemoryStateStore({ now: c.now });
    const b = bucket("rl:p:batch", 5, 10_000);
    expect((await s.admit({ buckets: [{ ...b, cost: 3 }], nowMs: c.now() })).rate).toMatchObject({
      ok: true,
      remaining: 2,
    });
    expect((await s.admit({ buckets: [{ ...b, cost: 3 }], nowMs: c.now() })).rate).toMatchObject({
      ok: false,
      retryAfterMs: 2000,
    });
    expect((await s.admit({ buckets: [{ ...b, cost: 2 }], nowMs: c.now() })).rate).toMatchObject({
      ok: true,
      remaining: 0,
    });
    expect((await s.admit({ buckets: [{ ...b, cost: 6 }], nowMs: c.now() + 10_000 })).rate?.ok).toBe(false);
  });

  it("one caller's bucket does not affect another's", async () => {
    const c = clock();
    const s = createMemoryStateStore({ now: c.now });
    const a = bucket("rl:p:A", 1, 60_000);
    const b = bucket("rl:p:B", 1, 60_000);
    expect((await s.admit({ buckets: [a], nowMs: c.now() })).rate?.ok).toBe(true);
    expect((await s.admit({ buckets: [a], nowMs: c.now() })).rate?.ok).toBe(false);
    expect((await s.admit({ buckets: [b], nowMs: c.now() })).rate?.ok).toBe(true);
  });

  it("does not touch buckets when the session check fails", async () => {
    const c = clock();
    const s = createMemoryStateStore({ now: c.now });
    await s.bindSession("sid", A, 60_000);
    const b = bucket("rl:p:B", 1, 60_000);
    const res = await s.admit({
      session: { id: "sid", principal: B.principal, idleTtlMs: 60_000 },
      buckets: [b],
      nowMs: c.now(),
    });
    expect(res.rate).toBeUndefined();
    expect(s.bucketCount()).toBe(0);
    expect((await s.admit({ buckets: [b], nowMs: c.now() })).rate?.ok).toBe(true);
  });

  it("keeps at most maxBuckets buckets, sweeping expired ones", async () => {
    const c = clock();
    const s = createMemoryStateStore({ now: c.now, maxBuckets: 10 });
    for (let i = 0; i < 25; i++) await s.admit({ buckets: [bucket(`k${i}`, 10, 1000)], nowMs: c.now() });
    expect(s.bucketCount()).toBe(10);
    c.advance(1000);
    await s.admit({ buckets: [bucket("fresh", 10, 1000)], nowMs: c.now() });
    expect(s.bucketCount()).toBeLessThanOrEqual(3);
  });

  it("gcraStep refills one request per window/limit", () => {
    const t0 = 1_000_000;
    let tat: number | undefined;
    for (let i = 0; i < 3; i++) tat = gcraStep(tat, 3, 3000, t0).tat;
    expect(gcraStep(tat, 3, 3000, t0)).toMatchObject({ ok: false, retryAfterMs: 1000 });
    expect(gcraStep(tat, 3, 3000, t0 + 1000)).toMatchObject({ ok: true, remaining: 0 });
    expect(gcraStep(tat, 3, 3000, t0 + 3000)).toMatchObject({ ok: true, remaining: 2 });
  });
});
