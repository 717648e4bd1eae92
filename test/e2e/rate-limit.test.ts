import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { messagesOf, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

let nextId = 1;
function call(url: string, key: string, name: string, args: Record<string, unknown> = {}) {
  return rawPost(
    url,
    { jsonrpc: "2.0", id: nextId++, method: "tools/call", params: { name, arguments: args } },
    { authorization: `Bearer ${key}`, "mcp-protocol-version": "2025-06-18" },
  );
}
const ECHO = { message: "hi" };
const ADD = { a: 1, b: 2 };

describe("per-caller rate limits", () => {
  let dir: string;
  let location: string;
  let upstream: RecordingUpstream;
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-rl-"));
    location = `sqlite:${join(dir, "keys.db")}`;
    const store = await openKeyStore(location);
    for (const name of ["a", "b", "d", "r"]) keys[name] = (await issueApiKey(store, { name })).key;
    keys.c = (await issueApiKey(store, { name: "c", rateLimit: { perMinute: 2 } })).key;
    await store.close();
    upstream = await startRecordingUpstream({ stateless: true, jsonResponse: true });
  });

  afterAll(async () => {
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe("in memory", () => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startTestGateway({
        upstream: { url: upstream.url },
        auth: { apiKeys: { store: location } },
        rateLimit: {
          perPrincipal: { limit: 5, window: "1m" },
          tools: [{ match: "ech?", limit: 3, window: "1m" }],
        },
      });
    });
    afterAll(async () => {
      await gw?.close();
    });

    it("admits exactly N calls of a limited tool in a window, then answers 429 with Retry-After and RateLimit-Policy", async () => {
      const before = upstream.rpcCalls().filter((c) => c === "tools/call:echo").length;
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await call(gw.url, keys.a!, "echo", ECHO)).status);
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
      expect(upstream.rpcCalls().filter((c) => c === "tools/call:echo").length - before).toBe(3);

      const refused = await call(gw.url, keys.a!, "echo", ECHO);
      expect(refused.status).toBe(429);
      const retryAfter = Number(refused.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(refused.headers.get("ratelimit-policy")).toBe('"tool:ech?";q=3;w=60');
      expect(refused.headers.get("ratelimit")).toMatch(/^"tool:ech\?";r=0;t=\d+$/);
      expect((refused.json() as { error: { code: number } }).error.code).toBe(-31002);

      // Audited with the key's display prefix, the tool and the policy; never the key.
      const events = gw.logs
        .map((l) => JSON.parse(l) as { audit?: Record<string, unknown> })
        .filter((l) => l.audit?.type === "rate_limited")
        .map((l) => l.audit!);
      expect(events.length).toBeGreaterThanOrEqual(3);
      const keyId = keys.a!.split("_")[1]!;
      expect(events[0]).toMatchObject({ actor: `mcpg_${keyId}`, tool: "echo", reason: "tool:ech?" });
      expect(gw.logs.join("\n")).not.toContain(keys.a!);
    });

    it("counts every request against the principal's limit, refused ones excepted", async () => {
      // Key a used 3 of its 5 (the refused echo calls took nothing).
      expect((await call(gw.url, keys.a!, "add", ADD)).status).toBe(200);
      expect((await call(gw.url, keys.a!, "add", ADD)).status).toBe(200);
      const r = await call(gw.url, keys.a!, "add", ADD);
      expect(r.status).toBe(429);
      expect(r.headers.get("ratelimit-policy")).toBe('"principal";q=5;w=60');
    });

    it("keeps one caller's limit away from another's", async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await call(gw.url, keys.b!, "echo", ECHO)).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
    });

    it("applies a key's own perMinute limit", async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await call(gw.url, keys.c!, "add", ADD)).status);
      expect(statuses).toEqual([200, 200, 429]);
      const r = await call(gw.url, keys.c!, "add", ADD);
      expect(r.headers.get("ratelimit-policy")).toBe('"principal";q=2;w=60');
    });

    it("charges a batch per call, so a batch cannot slip past a tool's limit", async () => {
      const batch = [1, 2, 3, 4].map((i) => ({
        jsonrpc: "2.0",
        id: 100 + i,
        method: "tools/call",
        params: { name: "echo", arguments: ECHO },
      }));
      const before = upstream.seen.length;
      const r = await rawPost(gw.url, batch, {
        authorization: `Bearer ${keys.d}`,
        "mcp-protocol-version": "2025-03-26",
      });
      expect(r.status).toBe(429);
      expect(upstream.seen.length).toBe(before);
      // Three fit.
      const ok = await rawPost(gw.url, batch.slice(0, 3), {
        authorization: `Bearer ${keys.d}`,
        "mcp-protocol-version": "2025-03-26",
      });
      expect(ok.status).toBe(200);
      expect(messagesOf(ok.text)).toHaveLength(3);
    });
  });

  describe("shared in Redis by two gateway instances", () => {
    let gw1: TestGateway;
    let gw2: TestGateway;
    const prefix = `mcpgate-test-${randomBytes(4).toString("hex")}:`;

    beforeAll(async () => {
      const config = {
        upstream: { url: upstream.url },
        auth: { apiKeys: { store: location } },
        state: { redis: REDIS_URL, prefix },
        rateLimit: { perPrincipal: { limit: 7, window: "1m" } },
      };
      gw1 = await startTestGateway(config);
      gw2 = await startTestGateway(config);
    });
    afterAll(async () => {
      await gw1?.close();
      await gw2?.close();
      const { Redis } = await import("ioredis");
      const redis = new Redis(REDIS_URL);
      const found = await redis.keys(`${prefix}*`);
      if (found.length) await redis.del(...found);
      redis.disconnect();
    });

    it("admits exactly N requests summed over both instances", async () => {
      const results = await Promise.all(
        Array.from({ length: 16 }, (_, i) => call(i % 2 ? gw1.url : gw2.url, keys.r!, "add", ADD)),
      );
      const ok = results.filter((r) => r.status === 200).length;
      expect(ok).toBe(7);
      expect(results.filter((r) => r.status === 429).length).toBe(9);
      // Both instances did refuse (the limit is shared, not per instance).
      const refusedBy = new Set(results.map((r, i) => (r.status === 429 ? i % 2 : -1)).filter((x) => x >= 0));
      expect(refusedBy.size).toBe(2);
    });
  });
});
