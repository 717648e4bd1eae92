import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StateStore } from "../../src/core/contracts.js";
import { SessionLimitError } from "../../src/core/errors.js";
import { createMemoryStateStore, defaultSessionsPerPrincipal } from "../../src/stores/memory-state.js";
import { createRedisStateStore } from "../../src/stores/redis-state.js";

/**
 * Issue 14 item 3 (store side): per-principal session shares, and a full store refuses a new
 * session instead of evicting another principal's live one. The same scenarios run against the
 * memory store and a real Redis (own key prefix).
 */
const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const A = { principal: "key:AAAAAAAA", display: "mcpg_AAAAAAAA" };
const B = { principal: "oauth:https://as.example#bob", display: "oauth:bob" };
const C = { principal: "key:CCCCCCCC", display: "mcpg_CCCCCCCC" };
const TTL = 60_000;

type Make = (opts: { maxSessions: number; maxSessionsPerPrincipal: number }) => Promise<StateStore>;

const status = async (s: StateStore, id: string, principal: string) =>
  (await s.admit({ session: { id, principal, idleTtlMs: TTL }, buckets: [], nowMs: Date.now() })).session
    ?.status;

async function refusal(p: Promise<void>): Promise<SessionLimitError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SessionLimitError);
  return err as SessionLimitError;
}

function scenarios(name: string, make: Make) {
  describe(`${name}: session shares`, () => {
    it("refuses a principal's session beyond its share, leaving everyone's live sessions alone", async () => {
      const s = await make({ maxSessions: 10, maxSessionsPerPrincipal: 2 });
      await s.bindSession("a1", A, TTL);
      await s.bindSession("b1", B, TTL);
      await s.bindSession("b2", B, TTL);
      const err = await refusal(s.bindSession("b3", B, TTL));
      expect(err.scope).toBe("principal");
      expect(err.code).toBe("ERR_SESSION_LIMIT");
      expect(err.retryAfterSec).toBeGreaterThan(55);
      expect(err.retryAfterSec).toBeLessThanOrEqual(60);
      expect(await s.sessionRoom!(B.principal)).toMatchObject({ ok: false, scope: "principal" });
      expect(await s.sessionRoom!(A.principal)).toEqual({ ok: true });
      for (const [id, p] of [
        ["a1", A],
        ["b1", B],
        ["b2", B],
      ] as const)
        expect(await status(s, id, p.principal)).toBe("ok");
      expect(await status(s, "b3", B.principal)).toBe("unknown");
      // Ending one of its sessions gives the principal its slot back.
      await s.removeSession("b1");
      await s.bindSession("b3", B, TTL);
      expect(await status(s, "b3", B.principal)).toBe("ok");
      await s.close?.();
    });

    it("at the global cap refuses the new session instead of evicting another principal's", async () => {
      const s = await make({ maxSessions: 3, maxSessionsPerPrincipal: 3 });
      await s.bindSession("a1", A, TTL);
      await s.bindSession("b1", B, TTL);
      await s.bindSession("b2", B, TTL);
      // B is within its share, but the store is full: refused, and A's session survives.
      for (let i = 0; i < 5; i++) {
        const err = await refusal(s.bindSession(`b-extra-${i}`, B, TTL));
        expect(err.scope).toBe("global");
      }
      expect((await refusal(s.bindSession("c1", C, TTL))).scope).toBe("global");
      expect(await s.sessionRoom!(C.principal)).toMatchObject({ ok: false, scope: "global" });
      expect(await status(s, "a1", A.principal)).toBe("ok");
      expect(await s.sessionCount!()).toBe(3);
      await s.close?.();
    });

    it("counts only live sessions: expired ones free their slots", async () => {
      const s = await make({ maxSessions: 10, maxSessionsPerPrincipal: 1 });
      await s.bindSession("short", A, 150);
      await refusal(s.bindSession("next", A, TTL));
      await new Promise((r) => setTimeout(r, 250));
      expect(await s.sessionRoom!(A.principal)).toEqual({ ok: true });
      await s.bindSession("next", A, TTL);
      expect(await status(s, "next", A.principal)).toBe("ok");
      await s.close?.();
    });

    it("never lets concurrent binds of one principal overshoot its share", async () => {
      const s = await make({ maxSessions: 100, maxSessionsPerPrincipal: 3 });
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) => s.bindSession(`c${i}`, B, TTL)),
      );
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(3);
      expect(await s.sessionCount!()).toBe(3);
      await s.close?.();
    });

    it("re-binding an id of the same principal replaces it (no slot leaked)", async () => {
      const s = await make({ maxSessions: 10, maxSessionsPerPrincipal: 1 });
      await s.bindSession("same", A, TTL);
      await s.bindSession("same", A, TTL);
      expect(await s.sessionCount!()).toBe(1);
      await s.close?.();
    });
  });
}

describe("defaults", () => {
  it("gives one principal a tenth of the store, at most 1000", () => {
    expect(defaultSessionsPerPrincipal(100_000)).toBe(1000);
    expect(defaultSessionsPerPrincipal(20)).toBe(2);
    expect(defaultSessionsPerPrincipal(5)).toBe(1);
  });
});

scenarios("memory", async (o) => createMemoryStateStore(o));

describe("redis", () => {
  const prefix = `mcpgate-test-shares-${randomBytes(6).toString("hex")}:`;
  let raw: Redis;
  let n = 0;
  beforeAll(() => {
    raw = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    await raw.quit();
  });
  scenarios("redis", async (o) => {
    const s = createRedisStateStore({ url: REDIS_URL, prefix: `${prefix}${n++}:`, ...o });
    await s.init();
    return s;
  });
});
