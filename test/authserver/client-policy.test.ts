import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import {
  createRegistrationLimiter,
  registrationSiteKey,
  registrationSourceKey,
} from "../../src/authserver/client-policy.js";
import { createRedisStateStore } from "../../src/stores/redis-state.js";

const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `mcpgate-test-register-${randomBytes(4).toString("hex")}:`;

afterAll(async () => {
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("registrationSourceKey: IPv4 per address, IPv6 per /64", () => {
  it.each([
    ["192.0.2.1", "192.0.2.1"],
    ["::ffff:192.0.2.1", "192.0.2.1"],
    ["::FFFF:c000:0201", "192.0.2.1"],
    ["[::ffff:192.0.2.1]", "192.0.2.1"],
    ["2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"],
    ["2001:0DB8:0001:0002:bbbb:0:0:2", "2001:db8:1:2::/64"],
    ["[2001:db8:1:2::3]", "2001:db8:1:2::/64"],
    ["2001:db8:1:2::ffff:10.0.0.1", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8::/64"],
    ["2001:db8:0:0:1::1", "2001:db8::/64"],
    ["fe80::1%eth0", "fe80::/64"],
    ["::1", "::/64"],
    ["::", "::/64"],
    ["unknown", "invalid"],
  ])("%s → %s", (source, key) => {
    expect(registrationSourceKey(source)).toBe(key);
  });

  it("keeps neighbouring /64s apart", () => {
    expect(registrationSourceKey("2001:db8:1:2::1")).not.toBe(registrationSourceKey("2001:db8:1:3::1"));
    expect(registrationSourceKey("192.0.2.1")).not.toBe(registrationSourceKey("192.0.2.2"));
  });
});

describe("registrationSiteKey: an IPv6 caller's /48, none for IPv4", () => {
  it.each([
    ["2001:db8:1:2::a", "2001:db8:1::/48"],
    ["2001:0DB8:0001:ffff:bbbb:0:0:2", "2001:db8:1::/48"],
    ["[2001:db8:abcd:12::3]", "2001:db8:abcd::/48"],
    ["2001:db8:1:2::ffff:10.0.0.1", "2001:db8:1::/48"],
    ["2001:db8::1", "2001:db8::/48"],
    ["0:0:1:2::1", "0:0:1::/48"],
    ["0:0:0:1::", "::/48"],
    ["fe80::1%eth0", "fe80::/48"],
    ["::1", "::/48"],
  ])("%s → %s", (source, key) => {
    expect(registrationSiteKey(source)).toBe(key);
  });

  it.each(["192.0.2.1", "::ffff:192.0.2.1", "[::ffff:c000:0201]", "unknown", "invalid", "1::2/64"])(
    "%s → none (counted by its own key only)",
    (source) => {
      expect(registrationSiteKey(source)).toBeUndefined();
    },
  );
});

describe("the registration limiter", () => {
  it("gives two addresses of one /64 one budget, and another /64 its own (in process)", async () => {
    let now = 1_000_000;
    const limiter = createRegistrationLimiter({ limit: 2, windowMs: 60_000, now: () => now });
    expect(await limiter.take("2001:db8:1:2::a")).toEqual({ ok: true });
    expect(await limiter.take("2001:db8:1:2:ffff:ffff:ffff:ffff")).toEqual({ ok: true });
    expect(await limiter.take("2001:db8:1:2::b")).toEqual({ ok: false, retryAfterSec: 60 });
    expect(await limiter.take("2001:db8:1:3::a")).toEqual({ ok: true });
    expect(await limiter.take("::ffff:192.0.2.1")).toEqual({ ok: true });
    expect(await limiter.take("192.0.2.1")).toEqual({ ok: true });
    expect(await limiter.take("192.0.2.1")).toMatchObject({ ok: false });
    now += 60_000;
    expect(await limiter.take("2001:db8:1:2::c")).toEqual({ ok: true });
  });

  it("refuses a /48 past its budget without spending the /64's (in process)", async () => {
    let now = 1_000_000;
    const limiter = createRegistrationLimiter({
      limit: 2,
      windowMs: 60_000,
      ipv6Slash48Limit: 3,
      now: () => now,
    });
    expect(await limiter.take("2001:db8:1:1::a")).toEqual({ ok: true });
    expect(await limiter.take("2001:db8:1:2::a")).toEqual({ ok: true });
    expect(await limiter.take("2001:db8:1:3::a")).toEqual({ ok: true });
    // The /48 is spent: every other /64 of it is refused, with the window as Retry-After.
    expect(await limiter.take("2001:db8:1:4::a")).toEqual({ ok: false, retryAfterSec: 60 });
    expect(await limiter.take("2001:db8:1:4::b")).toEqual({ ok: false, retryAfterSec: 60 });
    expect(await limiter.take("2001:db8:2:4::a")).toEqual({ ok: true });
    now += 60_000;
    // 2001:db8:1:4::/64 was refused twice by its /48: both its units are still there.
    expect(await limiter.take("2001:db8:1:4::c")).toEqual({ ok: true });
    expect(await limiter.take("2001:db8:1:4::d")).toEqual({ ok: true });
    expect(await limiter.take("2001:db8:1:4::e")).toEqual({ ok: false, retryAfterSec: 60 });
  });

  it("gives an IPv6 /48 4 × limit by default, and IPv4 addresses no wider budget", async () => {
    const limiter = createRegistrationLimiter({ limit: 1, windowMs: 60_000 });
    for (let n = 0; n < 4; n++) expect(await limiter.take(`2001:db8:9:${n}::1`)).toEqual({ ok: true });
    expect((await limiter.take("2001:db8:9:99::1")).ok).toBe(false);
    for (let n = 1; n <= 20; n++) expect(await limiter.take(`198.51.100.${n}`)).toEqual({ ok: true });
  });

  it("refuses an ipv6Slash48Limit that is not a positive integer when built", () => {
    for (const bad of [0, -1, 2.5, Number.NaN])
      expect(() => createRegistrationLimiter({ limit: 1, windowMs: 60_000, ipv6Slash48Limit: bad })).toThrow(
        /ipv6Slash48Limit/,
      );
  });

  it("shares one budget per /48 between instances on one Redis, and spends no /64 unit it refuses", async () => {
    const a = createRedisStateStore({ url: REDIS_URL, prefix });
    const b = createRedisStateStore({ url: REDIS_URL, prefix });
    await a.init();
    await b.init();
    try {
      const options = { limit: 2, windowMs: 60_000, ipv6Slash48Limit: 3 };
      const onA = createRegistrationLimiter({ ...options, state: a });
      const onB = createRegistrationLimiter({ ...options, state: b });
      expect(await onA.take("2001:db8:48:1::1")).toEqual({ ok: true });
      expect(await onB.take("2001:db8:48:2::1")).toEqual({ ok: true });
      expect(await onA.take("2001:db8:48:3::1")).toEqual({ ok: true });
      const refused = await onB.take("2001:db8:48:4::1");
      expect(refused.ok).toBe(false);
      expect(!refused.ok && refused.retryAfterSec).toBeGreaterThan(18); // GCRA: 60 s / 3
      expect(!refused.ok && refused.retryAfterSec).toBeLessThanOrEqual(20);
      expect((await onA.take("2001:db8:48:5::1")).ok).toBe(false);
      expect(await onA.take("2001:db8:49:4::1")).toEqual({ ok: true });
      // The refusals took nothing from 2001:db8:48:4::/64: its bucket was never written.
      const redis = new Redis(REDIS_URL);
      try {
        expect(await redis.exists(`${prefix}rl:register:2001:db8:48:4::/64`)).toBe(0);
        expect(await redis.exists(`${prefix}rl:register:2001:db8:48:1::/64`)).toBe(1);
        expect(await redis.exists(`${prefix}rl:register:2001:db8:48::/48`)).toBe(1);
      } finally {
        redis.disconnect();
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("shares one budget per /64 between instances on one Redis (state.redis)", async () => {
    const a = createRedisStateStore({ url: REDIS_URL, prefix });
    const b = createRedisStateStore({ url: REDIS_URL, prefix });
    await a.init();
    await b.init();
    try {
      const onA = createRegistrationLimiter({ limit: 2, windowMs: 60_000, state: a });
      const onB = createRegistrationLimiter({ limit: 2, windowMs: 60_000, state: b });
      expect(await onA.take("2001:db8:7:7::1")).toEqual({ ok: true });
      expect(await onB.take("2001:db8:7:7::2")).toEqual({ ok: true });
      // Spent on both instances: GCRA lets one more in after window / limit (30 s).
      const refused = await onA.take("2001:db8:7:7:abcd::3");
      expect(refused.ok).toBe(false);
      expect(!refused.ok && refused.retryAfterSec).toBeGreaterThan(28);
      expect(!refused.ok && refused.retryAfterSec).toBeLessThanOrEqual(30);
      expect((await onB.take("2001:db8:7:7::4")).ok).toBe(false);
      expect(await onB.take("2001:db8:7:8::1")).toEqual({ ok: true });
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("fails closed when the shared store is unreachable (the caller answers 503)", async () => {
    const down = createRedisStateStore({ url: "redis://127.0.0.1:1", prefix, connectTimeoutMs: 200 });
    const limiter = createRegistrationLimiter({ limit: 2, windowMs: 60_000, state: down });
    await expect(limiter.take("192.0.2.9")).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
    await down.close();
  });
});
