import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { createApiKeyVerifier } from "../../src/authn/stored-key.js";
import { createMemoryKeyStore } from "../../src/stores/memory-keys.js";
import { createRedisKeyEvents } from "../../src/stores/redis-key-events.js";

const url = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = () => `mcpgate-test-${randomBytes(4).toString("hex")}:`;

async function waitFor(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("Redis key revocation feed", () => {
  it("delivers published key ids on <prefix>keys:revoked to subscribers, and only that channel", async () => {
    const p = prefix();
    const sub = createRedisKeyEvents({ url, prefix: p });
    const pub = createRedisKeyEvents({ url, prefix: p });
    const other = createRedisKeyEvents({ url, prefix: prefix() });
    expect(sub.channel).toBe(`${p}keys:revoked`);
    const got: Array<string | undefined> = [];
    await sub.subscribe((id) => got.push(id));
    await other.publishRevoked("OTHERxxx");
    await pub.publishRevoked("AbCd1234");
    await waitFor(() => got.length > 0);
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual(["AbCd1234"]);
    await Promise.all([sub.close(), pub.close(), other.close()]);
  });

  it("makes a verifier refuse a revoked key at once instead of after its cache lifetime", async () => {
    const store = createMemoryKeyStore();
    await store.init();
    const { key, record } = await issueApiKey(store, { name: "x" });
    let t = Date.now();
    const verifier = createApiKeyVerifier({ store, now: () => t });
    const p = prefix();
    const sub = createRedisKeyEvents({ url, prefix: p });
    const pub = createRedisKeyEvents({ url, prefix: p });
    let delivered = 0;
    await sub.subscribe((id) => {
      verifier.invalidate(id);
      delivered++;
    });
    expect((await verifier.verify(key)).ok).toBe(true);
    await store.revoke(record.id, t);
    t += 1; // well inside the 1 s cache lifetime
    expect((await verifier.verify(key)).ok).toBe(true);
    await pub.publishRevoked(record.id);
    await waitFor(() => delivered === 1);
    expect(await verifier.verify(key)).toEqual({ ok: false, reason: "revoked" });
    await Promise.all([sub.close(), pub.close(), verifier.close()]);
  });

  it("reports ERR_STORE_UNAVAILABLE when Redis cannot be reached", async () => {
    const events = createRedisKeyEvents({ url: "redis://127.0.0.1:1", connectTimeoutMs: 500 });
    await expect(events.publishRevoked("AbCd1234")).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
    await expect(events.subscribe(() => {})).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
    await events.close();
  });

  it("refuses a URL that is not redis:// at construction", () => {
    expect(() => createRedisKeyEvents({ url: "http://127.0.0.1:6379" })).toThrow(/redis:\/\//);
  });
});
