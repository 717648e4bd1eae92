import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RateBucket } from "../../src/core/contracts.js";
import { createRedisStateStore, type RedisStateStore } from "../../src/stores/redis-state.js";
import { type OwnRedis, startOwnRedis } from "./redis-server-fixture.js";

const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const A = { principal: "key:AAAAAAAA", display: "mcpg_AAAAAAAA" };
const B = { principal: "oauth:https://as.example#bob", display: "oauth:bob" };
const bucket = (key: string, limit: number, windowMs: number): RateBucket => ({
  key,
  limit,
  windowMs,
  policy: `${limit};w=${windowMs / 1000}`,
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("redis state store (shared Redis, random key prefix)", () => {
  const prefix = `mcpgate-test-${randomBytes(6).toString("hex")}:`;
  let store: RedisStateStore;
  let raw: Redis;

  beforeAll(async () => {
    store = createRedisStateStore({ url: REDIS_URL, prefix, maxSessions: 5, maxSessionsPerPrincipal: 5 });
    await store.init();
    raw = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    await raw.quit();
    await store.close();
  });

  const check = (id: string, principal: string, idleTtlMs = 60_000, buckets: RateBucket[] = []) =>
    store.admit({ session: { id, principal, idleTtlMs }, buckets, nowMs: Date.now() });

  it("stores a binding as a hash under the prefix with the idle TTL", async () => {
    await store.bindSession("layout", A, 60_000);
    expect(await raw.hgetall(`${prefix}s:layout`)).toEqual({ p: A.principal, d: A.display });
    const ttl = await raw.pttl(`${prefix}s:layout`);
    expect(ttl).toBeGreaterThan(59_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    expect(await raw.zscore(`${prefix}sessions`, "layout")).not.toBeNull();
  });

  it("admits the owner, reports a mismatch with the owner's display, and unknown for an unbound id", async () => {
    await store.bindSession("sid-a", A, 60_000);
    expect((await check("sid-a", A.principal)).session).toEqual({ status: "ok" });
    expect((await check("sid-a", B.principal)).session).toEqual({
      status: "mismatch",
      ownerDisplay: A.display,
    });
    expect((await check("never-bound", A.principal)).session).toEqual({ status: "unknown" });
  });

  it("slides the idle deadline on use and forgets the binding after the idle TTL", async () => {
    await store.bindSession("idle", A, 300);
    await sleep(200);
    expect((await check("idle", A.principal, 300)).session?.status).toBe("ok");
    await sleep(200); // 400 ms after binding, 200 ms after the slide
    expect((await check("idle", A.principal, 300)).session?.status).toBe("ok");
    await sleep(400);
    expect((await check("idle", A.principal, 300)).session?.status).toBe("unknown");
  });

  it("removes a binding", async () => {
    await store.bindSession("gone", A, 60_000);
    await store.removeSession("gone");
    expect((await check("gone", A.principal)).session?.status).toBe("unknown");
    expect(await raw.zscore(`${prefix}sessions`, "gone")).toBeNull();
  });

  it("allows exactly `limit` requests of a burst and refuses the next with Retry-After", async () => {
    const b = bucket("rl:p:burst", 4, 60_000);
    const results = [];
    for (let i = 0; i < 5; i++) results.push((await store.admit({ buckets: [b], nowMs: 0 })).rate);
    expect(results.map((r) => r?.ok)).toEqual([true, true, true, true, false]);
    expect(results.slice(0, 4).map((r) => (r?.ok ? r.remaining : -1))).toEqual([3, 2, 1, 0]);
    const last = results[4]!;
    expect(last.ok).toBe(false);
    if (!last.ok) {
      expect(last.bucket).toBe(b);
      expect(last.retryAfterMs).toBeGreaterThan(14_000);
      expect(last.retryAfterMs).toBeLessThanOrEqual(15_000);
    }
    const pttl = await raw.pttl(`${prefix}rl:p:burst`);
    expect(pttl).toBeGreaterThan(59_000);
  });

  it("charges a batch its cost and refuses one costing more than is left, taking nothing", async () => {
    const b = bucket("rl:p:batch", 5, 60_000);
    expect((await store.admit({ buckets: [{ ...b, cost: 3 }], nowMs: 0 })).rate).toMatchObject({
      ok: true,
      remaining: 2,
    });
    expect((await store.admit({ buckets: [{ ...b, cost: 3 }], nowMs: 0 })).rate?.ok).toBe(false);
    expect((await store.admit({ buckets: [{ ...b, cost: 2 }], nowMs: 0 })).rate).toMatchObject({
      ok: true,
      remaining: 0,
    });
  });

  it("consumes nothing when one bucket refuses or when the session check fails", async () => {
    const wide = bucket("rl:p:wide", 10, 60_000);
    const narrow = bucket("rl:t:narrow", 1, 60_000);
    expect((await store.admit({ buckets: [wide, narrow], nowMs: 0 })).rate).toMatchObject({
      ok: true,
      bucket: narrow,
    });
    for (let i = 0; i < 3; i++) {
      expect((await store.admit({ buckets: [wide, narrow], nowMs: 0 })).rate).toMatchObject({
        ok: false,
        bucket: narrow,
      });
    }
    await store.bindSession("owned", A, 60_000);
    const mismatch = await check("owned", B.principal, 60_000, [wide]);
    expect(mismatch.rate).toBeUndefined();
    // Only the first admitted request consumed from `wide`: 8 left after this one.
    expect((await store.admit({ buckets: [wide], nowMs: 0 })).rate).toMatchObject({ ok: true, remaining: 8 });
  });

  it("refuses an oversized session id without asking Redis", async () => {
    expect((await check("x".repeat(600), A.principal)).session?.status).toBe("unknown");
    await expect(store.bindSession("x".repeat(600), A, 1000)).rejects.toMatchObject({
      code: "ERR_INVALID_OPTION",
    });
  });

  it("does the session check and the rate-limit update in one command (one round trip)", async () => {
    const client = new Redis(REDIS_URL, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      lazyConnect: true,
    });
    await client.connect();
    const sent: string[] = [];
    const original = client.sendCommand.bind(client);
    client.sendCommand = ((cmd: { name: string }) => {
      sent.push(cmd.name);
      return original(cmd as never);
    }) as typeof client.sendCommand;
    const counted = createRedisStateStore({ client, prefix });
    await counted.bindSession("rt", A, 60_000);
    // The first call may load the script (EVALSHA → NOSCRIPT → EVAL); measure a warm one.
    await counted.admit({
      session: { id: "rt", principal: A.principal, idleTtlMs: 60_000 },
      buckets: [],
      nowMs: 0,
    });
    sent.length = 0;
    const res = await counted.admit({
      session: { id: "rt", principal: A.principal, idleTtlMs: 60_000 },
      buckets: [bucket("rl:p:rt", 100, 60_000), bucket("rl:t:rt:echo", 10, 60_000)],
      nowMs: 0,
    });
    expect(res.session?.status).toBe("ok");
    expect(res.rate?.ok).toBe(true);
    expect(sent).toEqual(["evalsha"]);
    await counted.close(); // not ours to close: the client stays usable
    expect(await client.ping()).toBe("PONG");
    await client.quit();
  });

  it("rejects contradictory options at construction", () => {
    expect(() => createRedisStateStore({})).toThrow(/url or client/);
    expect(() => createRedisStateStore({ url: "http://x" })).toThrow(/redis:\/\//);
    expect(() => createRedisStateStore({ url: REDIS_URL, maxSessions: -1 })).toThrow(/maxSessions/);
  });
});

describe("redis state store when Redis goes away (own redis-server)", () => {
  let own: OwnRedis;
  beforeAll(async () => {
    own = await startOwnRedis();
  });
  afterAll(async () => {
    await own?.stop();
  });

  it("fails fast with ERR_STORE_UNAVAILABLE while Redis is down and recovers by itself when it returns", async () => {
    const store = createRedisStateStore({ url: own.url, prefix: "t:" });
    await store.init();
    await store.bindSession("sid", A, 60_000);
    await own.stop();
    const started = Date.now();
    await expect(
      store.admit({
        session: { id: "sid", principal: A.principal, idleTtlMs: 60_000 },
        buckets: [],
        nowMs: 0,
      }),
    ).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
    expect(Date.now() - started).toBeLessThan(1500);
    await own.start();
    // No persistence: the binding is gone, but the store answers again (unknown), without any help.
    let status: string | undefined;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      try {
        status = (
          await store.admit({
            session: { id: "sid", principal: A.principal, idleTtlMs: 60_000 },
            buckets: [],
            nowMs: 0,
          })
        ).session?.status;
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    expect(status).toBe("unknown");
    await store.close();
  });

  it("init fails with ERR_STORE_UNAVAILABLE when nothing listens", async () => {
    const store = createRedisStateStore({ url: "redis://127.0.0.1:1", connectTimeoutMs: 300 });
    await expect(store.init()).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
    await store.close();
  });
});
