import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { createGuard } from "../../src/observe/guard.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { createRedisStateStore } from "../../src/stores/redis-state.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { startTestAuthServer, type TestAuthServer } from "./harness.js";

const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const REDIRECT = "http://127.0.0.1:9/callback";
const prefix = `mcpgate-test-register48-${randomBytes(4).toString("hex")}:`;

afterAll(async () => {
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

/** What a registration got: status, Retry-After and the OAuth error body. */
interface Answer {
  status: number;
  retryAfter: string | null;
  body: { error?: string; error_description?: string; client_id?: string };
}

/** RFC 7591 registration sent through a trusted proxy that says the caller is `address`. */
async function registerFrom(issuer: string, address: string): Promise<Answer> {
  const res = await fetch(`${issuer}/oauth/register`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-forwarded-for": address },
    body: JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" }),
  });
  return {
    status: res.status,
    retryAfter: res.headers.get("retry-after"),
    body: (await res.json()) as Answer["body"],
  };
}

/** An address in /64 number `n` of the attacker's /48 2001:db8:a::/48 (a different /64 each time). */
const attacker = (n: number) => `2001:db8:a:${n.toString(16)}::${(n + 1).toString(16)}`;

const TOO_MANY = {
  error: "too_many_requests",
  error_description: "too many registrations from this address",
};

describe("the registration limit per IPv6 /48 (in process)", () => {
  let t: TestAuthServer;
  afterAll(async () => {
    await t?.close();
  });

  it("refuses an attacker registering from many /64s of one /48 once its /48 budget is spent, while another /48 still registers", async () => {
    // No ipv6Slash48Limit: the default, 4 × limit = 8 per /48.
    t = await startTestAuthServer({
      clients: { registrationRateLimit: { limit: 2, windowMs: 60_000 } },
      guard: createGuard({ trustProxy: true }),
    });
    const statuses: number[] = [];
    for (let n = 0; n < 12; n++) statuses.push((await registerFrom(t.issuer, attacker(n))).status);
    expect(statuses).toEqual([201, 201, 201, 201, 201, 201, 201, 201, 429, 429, 429, 429]);
    // Exactly the answer a spent /64 gets.
    const by48 = await registerFrom(t.issuer, attacker(100));
    await registerFrom(t.issuer, "2001:db8:c:1::1");
    await registerFrom(t.issuer, "2001:db8:c:1::2");
    const by64 = await registerFrom(t.issuer, "2001:db8:c:1::3");
    expect(by64).toEqual({ status: 429, retryAfter: "60", body: TOO_MANY });
    expect(by48).toEqual(by64);
    // Another /48 has its own budget.
    expect((await registerFrom(t.issuer, "2001:db8:b:1::1")).status).toBe(201);
    expect((await registerFrom(t.issuer, "2001:db8:b:2::1")).status).toBe(201);
  });

  it("leaves IPv4 callers (and IPv4-mapped IPv6 ones) counted per address only", async () => {
    const v4 = await startTestAuthServer({
      clients: { registrationRateLimit: { limit: 2, windowMs: 60_000, ipv6Slash48Limit: 2 } },
      guard: createGuard({ trustProxy: true }),
    });
    try {
      // Spend an IPv6 /48 first: IPv4 callers share no budget with it.
      expect((await registerFrom(v4.issuer, attacker(0))).status).toBe(201);
      expect((await registerFrom(v4.issuer, attacker(1))).status).toBe(201);
      expect((await registerFrom(v4.issuer, attacker(2))).status).toBe(429);
      // Twelve addresses of one /24, each its full budget of 2: no wider IPv4 budget.
      const statuses: number[] = [];
      for (let n = 1; n <= 12; n++) {
        statuses.push((await registerFrom(v4.issuer, `192.0.2.${n}`)).status);
        statuses.push((await registerFrom(v4.issuer, `::ffff:192.0.2.${n}`)).status);
      }
      expect(statuses).toEqual(Array.from({ length: 24 }, () => 201));
      expect(await registerFrom(v4.issuer, "192.0.2.1")).toEqual({
        status: 429,
        retryAfter: "60",
        body: TOO_MANY,
      });
    } finally {
      await v4.close();
    }
  });
});

describe("the registration limit per IPv6 /48, shared through Redis (state.redis)", () => {
  it("gives two instances one /48 budget: the attacker is refused on both, another /48 registers on both", async () => {
    const stateA = createRedisStateStore({ url: REDIS_URL, prefix });
    const stateB = createRedisStateStore({ url: REDIS_URL, prefix });
    await stateA.init();
    await stateB.init();
    const limit = { limit: 2, windowMs: 60_000, ipv6Slash48Limit: 6 };
    const a = await startTestAuthServer({
      clients: { registrationRateLimit: { ...limit, state: stateA } },
      guard: createGuard({ trustProxy: true }),
    });
    const b = await startTestAuthServer({
      clients: { registrationRateLimit: { ...limit, state: stateB } },
      guard: createGuard({ trustProxy: true }),
    });
    try {
      const statuses: number[] = [];
      for (let n = 0; n < 10; n++) {
        statuses.push((await registerFrom((n % 2 === 0 ? a : b).issuer, attacker(n))).status);
      }
      expect(statuses).toEqual([201, 201, 201, 201, 201, 201, 429, 429, 429, 429]);
      // The same answer as a spent /64 on one Redis: GCRA lets one more in after window / limit.
      const by48 = await registerFrom(a.issuer, attacker(50));
      expect(by48.status).toBe(429);
      expect(by48.body).toEqual(TOO_MANY);
      expect(Number(by48.retryAfter)).toBeGreaterThan(8); // 60 s / 6 = 10 s
      expect(Number(by48.retryAfter)).toBeLessThanOrEqual(10);
      expect((await registerFrom(b.issuer, attacker(51))).status).toBe(429);
      expect((await registerFrom(a.issuer, "2001:db8:b:1::1")).status).toBe(201);
      expect((await registerFrom(b.issuer, "2001:db8:b:2::1")).status).toBe(201);
      // IPv4: per address, shared by both instances, nothing more.
      expect((await registerFrom(a.issuer, "192.0.2.77")).status).toBe(201);
      expect((await registerFrom(b.issuer, "192.0.2.77")).status).toBe(201);
      const v4 = await registerFrom(a.issuer, "192.0.2.77");
      expect(v4.status).toBe(429);
      expect(v4.body).toEqual(TOO_MANY);
      expect((await registerFrom(b.issuer, "192.0.2.78")).status).toBe(201);
    } finally {
      await a.close();
      await b.close();
      await stateA.close();
      await stateB.close();
    }
  });

  it("refuses an IPv6 caller (503) while the shared budget store is unreachable", async () => {
    const down = createRedisStateStore({ url: "redis://127.0.0.1:1", prefix, connectTimeoutMs: 200 });
    const t = await startTestAuthServer({
      clients: { registrationRateLimit: { limit: 10, windowMs: 60_000, state: down } },
      guard: createGuard({ trustProxy: true }),
    });
    try {
      const answer = await registerFrom(t.issuer, attacker(0));
      expect(answer.status).toBe(503);
      expect(answer.body.error).toBe("temporarily_unavailable");
    } finally {
      await t.close();
      await down.close();
    }
  });
});

/**
 * The configuration path: `authServer.clients.registrationRateLimit.ipv6Slash48Limit` reaches the
 * authorization server of two gateways on one Redis (`state.redis`), behind a trusted proxy.
 */
describe("registrationRateLimit.ipv6Slash48Limit through the gateway's configuration", () => {
  const dirs: string[] = [];
  const gateways: TestGateway[] = [];
  afterAll(async () => {
    for (const gw of gateways) await gw.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("refuses the attacker's /48 on either gateway once the configured budget is spent", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mcpgate-as-reg48-"));
    dirs.push(dir);
    const store = `sqlite:${join(dir, "mcpgate.db")}`;
    const keys = await openKeyStore(store);
    await issueApiKey(keys, { name: "person", scopes: ["tools:call"] });
    await keys.close();
    const config = {
      upstream: { url: "http://127.0.0.1:9/mcp" },
      auth: { apiKeys: { store } },
      state: { redis: REDIS_URL, prefix },
      guard: { trustProxy: true },
      authServer: {
        login: { apiKey: {} },
        clients: { registrationRateLimit: { limit: 5, window: "1m", ipv6Slash48Limit: 5 } },
      },
      policy: { default: "deny" as const, tools: [{ match: "*", scopes: ["tools:call"] }] },
    };
    gateways.push(await startTestGateway(config), await startTestGateway(config));
    const [one, two] = gateways.map((gw) => new URL(gw.url).origin) as [string, string];
    const statuses: number[] = [];
    for (let n = 0; n < 7; n++) {
      statuses.push((await registerFrom(n % 2 === 0 ? one : two, `2001:db8:f:${n}::1`)).status);
    }
    expect(statuses).toEqual([201, 201, 201, 201, 201, 429, 429]);
    expect((await registerFrom(two, "2001:db8:e:1::1")).status).toBe(201);
  }, 30_000);
});
