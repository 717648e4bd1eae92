import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/authn/api-key.js";
import { issueApiKey, rotateApiKey } from "../../src/authn/key-lifecycle.js";
import { createApiKeyVerifier } from "../../src/authn/stored-key.js";
import { isMcpGateError } from "../../src/core/errors.js";
import type { KeyStore } from "../../src/stores/key-store.js";
import { createMemoryKeyStore } from "../../src/stores/memory-keys.js";
import { createSqliteKeyStore } from "../../src/stores/sqlite.js";

const T0 = 1_800_000_000_000;

/** A real memory store that counts the calls the verifier makes. */
function countingStore(): { store: KeyStore; calls: { get: number; touch: number } } {
  const inner = createMemoryKeyStore();
  const calls = { get: 0, touch: 0 };
  const store: KeyStore = {
    ...inner,
    get: (id) => {
      calls.get++;
      return inner.get(id);
    },
    touch: (entries) => {
      calls.touch++;
      return inner.touch(entries);
    },
  };
  return { store, calls };
}

let clock = T0;
const now = () => clock;
let store: KeyStore;
let calls: { get: number; touch: number };

beforeEach(async () => {
  clock = T0;
  ({ store, calls } = countingStore());
  await store.init();
});

const dir = mkdtempSync(join(tmpdir(), "mcpgate-stored-key-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("stored API key verification: accepted keys", () => {
  it("resolves a valid key to its identity (principal, scopes, tenant, prefix, probe, limits)", async () => {
    const { key, record } = await issueApiKey(store, {
      name: "ci",
      scopes: ["tools:call", "admin"],
      tenant: "acme",
      probe: true,
      rateLimit: { perMinute: 30 },
      expiresInMs: 3_600_000,
      now: T0,
    });
    const v = createApiKeyVerifier({ store, now });
    expect(v.accepts(key)).toBe(true);
    expect(v.accepts("eyJhbGciOiJSUzI1NiJ9.e30.x")).toBe(false);
    expect(await v.verify(key)).toEqual({
      ok: true,
      identity: {
        principal: `key:${record.id}`,
        kind: "api_key",
        subject: record.id,
        tenant: "acme",
        scopes: ["tools:call", "admin"],
        displayPrefix: `mcpg_${record.id}`,
        expiresAt: Math.floor((T0 + 3_600_000) / 1000),
        probe: true,
        limits: { perMinute: 30 },
      },
    });
    await v.close();
  });

  it("verifies keys hashed with a pepper only when the verifier has the same pepper", async () => {
    const { key } = await issueApiKey(store, { name: "p", pepper: "s3cret-pepper" });
    const right = createApiKeyVerifier({ store, pepper: "s3cret-pepper", now });
    const none = createApiKeyVerifier({ store, now });
    const wrong = createApiKeyVerifier({ store, pepper: "other", now });
    expect((await right.verify(key)).ok).toBe(true);
    expect(await none.verify(key)).toEqual({ ok: false, reason: "invalid" });
    expect(await wrong.verify(key)).toEqual({ ok: false, reason: "invalid" });
    await Promise.all([right.close(), none.close(), wrong.close()]);
  });
});

describe("stored API key verification: refused keys (401)", () => {
  it("refuses a wrong secret under a valid id, even with a valid checksum", async () => {
    const { record } = await issueApiKey(store, { name: "x" });
    const forged = generateApiKey(record.id).key;
    const v = createApiKeyVerifier({ store, now });
    expect(await v.verify(forged)).toEqual({ ok: false, reason: "invalid" });
    await v.close();
  });

  it("refuses a bad checksum without asking the store", async () => {
    const { key } = await issueApiKey(store, { name: "x" });
    const last = key.at(-1) === "a" ? "b" : "a";
    const v = createApiKeyVerifier({ store, now });
    expect(await v.verify(key.slice(0, -1) + last)).toEqual({ ok: false, reason: "bad_checksum" });
    expect(await v.verify("mcpg_nonsense")).toEqual({ ok: false, reason: "malformed" });
    expect(calls.get).toBe(0);
    await v.close();
  });

  it("refuses an unknown id", async () => {
    const v = createApiKeyVerifier({ store, now });
    expect(await v.verify(generateApiKey().key)).toEqual({ ok: false, reason: "unknown_key" });
    await v.close();
  });

  it("refuses a revoked key, and sees a revocation made elsewhere within the 1 s cache lifetime", async () => {
    const { key, record } = await issueApiKey(store, { name: "x" });
    const v = createApiKeyVerifier({ store, now });
    expect((await v.verify(key)).ok).toBe(true);
    await store.revoke(record.id, clock);
    clock += 999;
    expect((await v.verify(key)).ok).toBe(true);
    clock += 1;
    expect(await v.verify(key)).toEqual({ ok: false, reason: "revoked" });
    await v.close();
  });

  it("drops a cached key at once when invalidate(id) is called by a revocation feed", async () => {
    const { key, record } = await issueApiKey(store, { name: "x" });
    const v = createApiKeyVerifier({ store, now });
    expect((await v.verify(key)).ok).toBe(true);
    await store.revoke(record.id, clock);
    v.invalidate(record.id);
    expect(await v.verify(key)).toEqual({ ok: false, reason: "revoked" });
    await v.close();
  });

  it("refuses an expired key from the exact millisecond of expiry, even while cached", async () => {
    const { key } = await issueApiKey(store, { name: "x", expiresInMs: 10_000, now: T0 });
    const v = createApiKeyVerifier({ store, now, cacheTtlMs: 1000 });
    clock = T0 + 9_999;
    expect((await v.verify(key)).ok).toBe(true);
    clock = T0 + 10_000;
    expect(await v.verify(key)).toEqual({ ok: false, reason: "expired" });
    await v.close();
  });
});

describe("stored API key verification: rotation", () => {
  it("accepts old and new keys during the grace period and only the new key after it", async () => {
    const { key: oldKey, record } = await issueApiKey(store, { name: "x", scopes: ["a"], now: T0 });
    const rotated = await rotateApiKey(store, record.id, { graceMs: 60_000, now: T0 });
    if (!rotated.ok) throw new Error(rotated.reason);
    const v = createApiKeyVerifier({ store, now });
    const during = await v.verify(oldKey);
    expect(during.ok).toBe(true);
    if (during.ok) expect(during.identity.expiresAt).toBe(Math.floor((T0 + 60_000) / 1000));
    const fresh = await v.verify(rotated.key);
    expect(fresh.ok && fresh.identity.scopes).toEqual(["a"]);
    clock = T0 + 59_999;
    expect((await v.verify(oldKey)).ok).toBe(true);
    clock = T0 + 60_000;
    expect(await v.verify(oldKey)).toEqual({ ok: false, reason: "revoked" });
    expect((await v.verify(rotated.key)).ok).toBe(true);
    await v.close();
  });

  it("ends the old key at once with no grace, and never lets grace outlive the old key's expiry", async () => {
    const a = await issueApiKey(store, { name: "a", now: T0 });
    const ra = await rotateApiKey(store, a.record.id, { now: T0 });
    expect(ra.ok && ra.graceUntil).toBe(T0);
    const b = await issueApiKey(store, { name: "b", expiresInMs: 5000, now: T0 });
    const rb = await rotateApiKey(store, b.record.id, { graceMs: 60_000, now: T0 });
    expect(rb.ok && rb.graceUntil).toBe(T0 + 5000);
    // The successor keeps the old key's lifetime, counted from the rotation.
    expect(rb.ok && rb.record.expiresAt).toBe(T0 + 5000);
    const v = createApiKeyVerifier({ store, now });
    expect(await v.verify(a.key)).toEqual({ ok: false, reason: "revoked" });
    await v.close();
  });

  it("refuses to rotate an unknown, revoked, expired or already rotated key", async () => {
    expect(await rotateApiKey(store, "ZZZZZZZZ")).toEqual({ ok: false, reason: "not_found" });
    const r = await issueApiKey(store, { name: "r" });
    await store.revoke(r.record.id);
    expect(await rotateApiKey(store, r.record.id)).toEqual({ ok: false, reason: "revoked" });
    const e = await issueApiKey(store, { name: "e", expiresInMs: 10, now: T0 });
    expect(await rotateApiKey(store, e.record.id, { now: T0 + 10 })).toEqual({
      ok: false,
      reason: "expired",
    });
    const o = await issueApiKey(store, { name: "o" });
    expect((await rotateApiKey(store, o.record.id)).ok).toBe(true);
    expect(await rotateApiKey(store, o.record.id)).toEqual({ ok: false, reason: "already_rotated" });
  });
});

describe("stored API key verification: store traffic", () => {
  it("serves repeated verifications from the cache and shares one lookup among concurrent ones", async () => {
    const { key } = await issueApiKey(store, { name: "x" });
    const v = createApiKeyVerifier({ store, now });
    const results = await Promise.all(Array.from({ length: 50 }, () => v.verify(key)));
    expect(results.every((r) => r.ok)).toBe(true);
    for (let i = 0; i < 50; i++) await v.verify(key);
    expect(calls.get).toBe(1);
    clock += 1000;
    await v.verify(key);
    expect(calls.get).toBe(2);
    await v.close();
  });

  it("asks the store every time when the cache is disabled", async () => {
    const { key } = await issueApiKey(store, { name: "x" });
    const v = createApiKeyVerifier({ store, now, cacheTtlMs: 0 });
    for (let i = 0; i < 5; i++) await v.verify(key);
    expect(calls.get).toBe(5);
    await v.close();
  });

  it("writes last-used instants in one batch, not one write per request, and flushes on close", async () => {
    const a = await issueApiKey(store, { name: "a" });
    const b = await issueApiKey(store, { name: "b" });
    const v = createApiKeyVerifier({ store, now, touchIntervalMs: 60_000 });
    for (let i = 0; i < 100; i++) {
      clock++;
      await v.verify(i % 2 ? a.key : b.key);
    }
    expect(calls.touch).toBe(0);
    expect((await store.get(a.record.id))?.lastUsedAt).toBeUndefined();
    await v.close();
    expect(calls.touch).toBe(1);
    expect((await store.get(a.record.id))?.lastUsedAt).toBe(T0 + 100);
    expect((await store.get(b.record.id))?.lastUsedAt).toBe(T0 + 99);
  });

  it("flushes last-used instants on its own timer", async () => {
    const a = await issueApiKey(store, { name: "a" });
    const v = createApiKeyVerifier({ store, touchIntervalMs: 50 });
    await v.verify(a.key);
    await new Promise((r) => setTimeout(r, 200));
    expect(calls.touch).toBe(1);
    expect((await store.get(a.record.id))?.lastUsedAt).toBeTypeOf("number");
    await v.close();
  });

  it("throws ERR_STORE_UNAVAILABLE (→ 503) when the store cannot be read, never a 401", async () => {
    const sqlite = createSqliteKeyStore({ path: join(dir, "down.db") });
    await sqlite.init();
    const { key } = await issueApiKey(sqlite, { name: "x" });
    const v = createApiKeyVerifier({ store: sqlite, cacheTtlMs: 0 });
    expect((await v.verify(key)).ok).toBe(true);
    await sqlite.close();
    const err = await v.verify(key).catch((e: unknown) => e);
    expect(isMcpGateError(err, "ERR_STORE_UNAVAILABLE")).toBe(true);
    expect(String((err as Error).message)).not.toContain(key.split("_")[2]!);
    await v.close();
  });
});

describe("stored API key verifier options", () => {
  it("refuses a cache lifetime above 1 s unless a revocation feed is wired", () => {
    expect(() => createApiKeyVerifier({ store, cacheTtlMs: 5000 })).toThrow(/1 s/);
    expect(() => createApiKeyVerifier({ store, cacheTtlMs: -1 })).toThrow(/cacheTtlMs/);
    const v = createApiKeyVerifier({ store, cacheTtlMs: 5000, revocationFeed: true });
    expect(v.kind).toBe("api_key");
    void v.close();
  });

  it("refuses a missing store at construction", () => {
    expect(() => createApiKeyVerifier({} as never)).toThrow(/store is required/);
  });
});
