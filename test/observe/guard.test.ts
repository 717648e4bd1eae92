import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import {
  createGuard,
  createMemoryGuardStore,
  guardKeyOf,
  normalizeAddress,
} from "../../src/observe/guard.js";
import { createRedisGuardStore, type RedisGuardStore } from "../../src/stores/redis-guard.js";

const REDIS = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

function clock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe("memory guard: lockout after repeated failures", () => {
  it("locks a source out at the failures-th failure inside the window, and only that source", async () => {
    const c = clock();
    const locks: Array<[string, number]> = [];
    const guard = createGuard({
      failures: 3,
      windowMs: 60_000,
      lockoutMs: 30_000,
      store: createMemoryGuardStore({ now: c.now }),
      onLockout: (ip, s) => locks.push([ip, s]),
    });
    expect(await guard.recordFailure("203.0.113.5")).toBe(0);
    expect(await guard.recordFailure("203.0.113.5")).toBe(0);
    expect(await guard.lockedFor("203.0.113.5")).toBe(0);
    expect(await guard.recordFailure("203.0.113.5")).toBe(30);
    expect(await guard.lockedFor("203.0.113.5")).toBe(30);
    expect(await guard.lockedFor("203.0.113.6")).toBe(0);
    // Further failures while locked do not announce a second lockout.
    expect(await guard.recordFailure("203.0.113.5")).toBe(30);
    expect(locks).toEqual([["203.0.113.5", 30]]);
  });

  it("lets the source in again at the exact end of the lockout, with a fresh count", async () => {
    const c = clock();
    const guard = createGuard({
      failures: 2,
      windowMs: 60_000,
      lockoutMs: 10_000,
      store: createMemoryGuardStore({ now: c.now }),
    });
    await guard.recordFailure("198.51.100.1");
    expect(await guard.recordFailure("198.51.100.1")).toBe(10);
    c.advance(9_001);
    expect(await guard.lockedFor("198.51.100.1")).toBe(1);
    c.advance(999);
    expect(await guard.lockedFor("198.51.100.1")).toBe(0);
    expect(await guard.recordFailure("198.51.100.1")).toBe(0);
  });

  it("forgets failures older than the window", async () => {
    const c = clock();
    const guard = createGuard({
      failures: 2,
      windowMs: 1_000,
      lockoutMs: 10_000,
      store: createMemoryGuardStore({ now: c.now }),
    });
    await guard.recordFailure("198.51.100.2");
    c.advance(1_000);
    expect(await guard.recordFailure("198.51.100.2")).toBe(0);
  });

  it("counts IPv6 sources per /64, so rotating inside a prefix does not help", async () => {
    const guard = createGuard({ failures: 2, lockoutMs: 5_000 });
    await guard.recordFailure("2001:db8:1:2::1");
    expect(await guard.recordFailure("2001:db8:1:2:ffff::9")).toBe(5);
    expect(await guard.lockedFor("2001:db8:1:2::abcd")).toBe(5);
    expect(await guard.lockedFor("2001:db8:1:3::1")).toBe(0);
    expect(guardKeyOf("2001:db8::1")).toBe("2001:db8::/64");
    // An IPv4-mapped address in either spelling is the IPv4 address, never one shared ::/64 bucket.
    expect(guardKeyOf("::ffff:7f00:1")).toBe("127.0.0.1");
    expect(normalizeAddress("::ffff:1.2.3.4")).toBe("1.2.3.4");
  });

  it("fails open and reports when its store fails", async () => {
    const errors: unknown[] = [];
    const broken = {
      recordFailure: async () => {
        throw new Error("down");
      },
      lockedMs: async () => {
        throw new Error("down");
      },
    };
    const guard = createGuard({ store: broken, onStoreError: (e) => errors.push(e) });
    expect(await guard.lockedFor("203.0.113.9")).toBe(0);
    expect(await guard.recordFailure("203.0.113.9")).toBe(0);
    expect(errors).toHaveLength(2);
  });

  it("refuses invalid options at construction", () => {
    expect(() => createGuard({ failures: 0 })).toThrow(TypeError);
    expect(() => createGuard({ lockoutMs: -1 })).toThrow(TypeError);
    expect(() => createGuard({ trustProxy: 1.5 })).toThrow(TypeError);
    expect(() => createGuard({ trustedProxies: ["not-an-ip"] })).toThrow(/trustedProxies/);
  });
});

describe("source address: X-Forwarded-For only when trusted", () => {
  const xff = (v: string) => ({ "x-forwarded-for": v });

  it("ignores X-Forwarded-For by default", () => {
    const guard = createGuard();
    expect(guard.sourceOf("127.0.0.1", xff("203.0.113.5"))).toBe("127.0.0.1");
    expect(guard.sourceOf("::ffff:10.0.0.7", {})).toBe("10.0.0.7");
  });

  it("with trustProxy takes the right-most hop, so a client-written entry cannot spoof", () => {
    const guard = createGuard({ trustProxy: true });
    expect(guard.sourceOf("10.0.0.1", xff("203.0.113.5"))).toBe("203.0.113.5");
    // The client wrote "1.1.1.1"; the proxy appended the real address.
    expect(guard.sourceOf("10.0.0.1", xff("1.1.1.1, 198.51.100.7"))).toBe("198.51.100.7");
    expect(guard.sourceOf("10.0.0.1", { "x-forwarded-for": ["1.1.1.1", "198.51.100.8"] })).toBe(
      "198.51.100.8",
    );
    expect(guard.sourceOf("10.0.0.1", {})).toBe("10.0.0.1");
  });

  it("skips hop counts and listed proxies, and buckets garbage together", () => {
    const two = createGuard({ trustProxy: 2 });
    expect(two.sourceOf("10.0.0.1", xff("203.0.113.5, 10.0.0.2"))).toBe("203.0.113.5");
    const listed = createGuard({ trustProxy: true, trustedProxies: ["10.0.0.0/8"] });
    expect(listed.sourceOf("10.0.0.1", xff("203.0.113.5, 10.9.9.9, 10.0.0.2"))).toBe("203.0.113.5");
    expect(two.sourceOf("10.0.0.1", xff("not-an-ip, 10.0.0.2"))).toBe("invalid");
  });

  it("never lets a client name its own key when it came through fewer proxies than trusted", () => {
    const three = createGuard({ trustProxy: 3 });
    // Two hops where three are trusted: the first is the client's own word.
    expect(three.sourceOf("10.0.0.1", xff("attacker-1"))).toBe("invalid");
    expect(three.sourceOf("10.0.0.1", xff("attacker-2"))).toBe("invalid");
    expect(three.sourceOf("10.0.0.1", xff("2001:db8:9:9::/64"))).toBe("invalid");
    expect(three.sourceOf("10.0.0.1", xff("203.0.113.7"))).toBe("203.0.113.7");
    // Whatever reaches the key function, a non-address is one shared key.
    expect(guardKeyOf("attacker-1")).toBe("invalid");
    expect(guardKeyOf("2001:db8:9:9::/64")).toBe("invalid");
  });
});

describe("Redis guard store: every instance agrees", () => {
  const prefix = `mcpgate-test-${randomBytes(6).toString("hex")}:`;
  const stores: RedisGuardStore[] = [];
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
  });

  it("a lockout made through one instance holds on another, and expires", async () => {
    const a = createRedisGuardStore({ url: REDIS, prefix });
    const b = createRedisGuardStore({ url: REDIS, prefix });
    stores.push(a, b);
    const locked: string[] = [];
    const ga = createGuard({
      failures: 3,
      lockoutMs: 1_000,
      store: a,
      onLockout: (ip) => locked.push(`a:${ip}`),
    });
    const gb = createGuard({
      failures: 3,
      lockoutMs: 1_000,
      store: b,
      onLockout: (ip) => locked.push(`b:${ip}`),
    });
    await ga.recordFailure("203.0.113.20");
    await gb.recordFailure("203.0.113.20");
    expect(await gb.lockedFor("203.0.113.20")).toBe(0);
    expect(await ga.recordFailure("203.0.113.20")).toBe(1);
    expect(await gb.lockedFor("203.0.113.20")).toBe(1);
    expect(await gb.recordFailure("203.0.113.20")).toBe(1);
    expect(locked).toEqual(["a:203.0.113.20"]);
    expect(await gb.lockedFor("203.0.113.21")).toBe(0);
    await new Promise((r) => setTimeout(r, 1_100));
    expect(await ga.lockedFor("203.0.113.20")).toBe(0);
    expect(await gb.lockedFor("203.0.113.20")).toBe(0);
  });

  it("reports an unreachable Redis as a store error and lets requests through", async () => {
    const dead = createRedisGuardStore({ url: "redis://127.0.0.1:1", prefix, commandTimeoutMs: 300 });
    stores.push(dead);
    const errors: unknown[] = [];
    const guard = createGuard({ store: dead, onStoreError: (e) => errors.push(e) });
    expect(await guard.lockedFor("203.0.113.30")).toBe(0);
    expect(errors.length).toBe(1);
    expect(String((errors[0] as Error).message)).toMatch(/redis guard store/);
  });
});
