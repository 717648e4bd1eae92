import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { connectClient, INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * Issue 14 item 3 through the gateway: keys competing for sessions. One key's initialize flood
 * is refused with 429 once it holds its share (`sessions.perPrincipal`); at `sessions.max` a new
 * session is refused with 503; both carry Retry-After; nobody's live session is evicted. Memory
 * state and Redis state alike.
 */
const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

for (const kind of ["memory", "redis"] as const) {
  describe(`session shares through the gateway (${kind} state)`, () => {
    let dir: string;
    let upstream: RecordingUpstream;
    let gw: TestGateway;
    const prefix = `mcpgate-test-gwshares-${randomBytes(5).toString("hex")}:`;
    const keys: Record<string, string> = {};

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "mcpgate-shares-"));
      const location = `sqlite:${join(dir, "keys.db")}`;
      const store = await openKeyStore(location);
      for (const k of ["a", "b", "c"]) keys[k] = (await issueApiKey(store, { name: k, scopes: [] })).key;
      await store.close();
      upstream = await startRecordingUpstream();
      gw = await startTestGateway({
        upstream: { url: upstream.url },
        auth: { apiKeys: { store: location } },
        sessions: { max: 4, perPrincipal: 2 },
        ...(kind === "redis" ? { state: { redis: REDIS_URL, prefix } } : {}),
      });
    });
    afterAll(async () => {
      await gw?.close();
      await upstream?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (kind === "redis") {
        const raw = new Redis(REDIS_URL);
        const left = await raw.keys(`${prefix}*`);
        if (left.length) await raw.del(...left);
        await raw.quit();
      }
    });

    const init = (key: string) => rawPost(gw.url, INIT, { authorization: `Bearer ${key}` });

    it("refuses a flood from one key with 429 past its share and 503 at the cap, evicting nobody", async () => {
      const { client } = await connectClient(gw.url, keys.a);
      try {
        expect(
          (await client.callTool({ name: "echo", arguments: { message: "before" } })).isError,
        ).toBeFalsy();
        const flood: number[] = [];
        let retryAfter: string | null = null;
        for (let i = 0; i < 25; i++) {
          const r = await init(keys.b!);
          flood.push(r.status);
          if (r.status === 429) retryAfter = r.headers.get("retry-after");
        }
        expect(flood.slice(0, 2)).toEqual([200, 200]);
        expect(new Set(flood.slice(2))).toEqual(new Set([429]));
        expect(Number(retryAfter)).toBeGreaterThan(0);
        // A third key fills the store (a: 1, b: 2, c: 1 = 4), then is refused with 503.
        expect((await init(keys.c!)).status).toBe(200);
        const full = await init(keys.c!);
        expect(full.status).toBe(503);
        expect(Number(full.headers.get("retry-after"))).toBeGreaterThan(0);
        // A's live session was never evicted.
        const after = await client.callTool({ name: "echo", arguments: { message: "after" } });
        expect(after.isError).toBeFalsy();
        // The refusals are audited by display prefix; no key ever reaches a log line.
        const logs = gw.logs.join("\n");
        expect(logs).toContain("sessions:principal");
        for (const k of Object.values(keys)) expect(logs).not.toContain(k);
      } finally {
        await client.close();
      }
    });
  });
}

describe("concurrent initializes of one key: the share holds and refused sessions are ended upstream", () => {
  let dir: string;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  let key: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-shares-race-"));
    const location = `sqlite:${join(dir, "keys.db")}`;
    const store = await openKeyStore(location);
    key = (await issueApiKey(store, { name: "racer", scopes: [] })).key;
    await store.close();
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({
      upstream: { url: upstream.url },
      auth: { apiKeys: { store: location } },
      sessions: { max: 100, perPrincipal: 2 },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("binds exactly its share, answers the rest 429, and DELETEs every extra session the upstream minted", async () => {
    const before = upstream.seen.length;
    const results = await Promise.all(
      Array.from({ length: 10 }, () => rawPost(gw.url, INIT, { authorization: `Bearer ${key}` })),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.filter((s) => s === 429)).toHaveLength(8);
    const minted = upstream.seen
      .slice(before)
      .filter((s) => s.method === "POST" && s.body.includes('"initialize"'));
    // Wait for the fire-and-forget DELETEs of the sessions that could not be bound.
    const deadline = Date.now() + 3_000;
    let deletes = 0;
    while (Date.now() < deadline) {
      deletes = upstream.seen.slice(before).filter((s) => s.method === "DELETE").length;
      if (deletes >= minted.length - 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(deletes).toBe(minted.length - 2);
    console.info(`concurrent initializes: ${minted.length} reached the upstream, ${deletes} ended there`);
  });
});
