import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateApiKey, hashSecret } from "../../src/authn/api-key.js";
import { isMcpGateError } from "../../src/core/errors.js";
import type { KeyRecord, KeyStore } from "../../src/stores/key-store.js";

/** A fresh, initialised store per test, and how to dispose of it. */
export type KeyStoreFactory = () => Promise<{ store: KeyStore; dispose: () => Promise<void> }>;

let seq = 0;
/** A record with a real random id and the hash of a real secret. */
export function sampleRecord(overrides: Partial<KeyRecord> = {}): KeyRecord {
  const { id, secret } = generateApiKey();
  seq++;
  return {
    id,
    hash: hashSecret(secret),
    name: `key ${seq}`,
    scopes: ["tools:call"],
    createdAt: 1_700_000_000_000 + seq,
    probe: false,
    ...overrides,
  };
}

/**
 * The shared contract every KeyStore implementation passes (memory, SQLite, PostgreSQL).
 */
export function describeKeyStoreContract(name: string, factory: KeyStoreFactory): void {
  describe(`KeyStore contract: ${name}`, () => {
    let store: KeyStore;
    let dispose: () => Promise<void>;

    beforeEach(async () => {
      ({ store, dispose } = await factory());
    });
    afterEach(async () => {
      await dispose();
    });

    it("returns exactly the record that was created, including every optional field", async () => {
      const full = sampleRecord({
        tenant: "acme",
        scopes: ["tools:call", "admin"],
        expiresAt: 1_800_000_000_000,
        lastUsedAt: 1_700_000_000_500,
        probe: true,
        rateLimit: { perMinute: 42 },
      });
      const minimal = sampleRecord({ scopes: [] });
      await store.create(full);
      await store.create(minimal);
      expect(await store.get(full.id)).toEqual(full);
      expect(await store.get(minimal.id)).toEqual(minimal);
    });

    it("answers undefined for an unknown id", async () => {
      expect(await store.get("ZZZZZZZZ")).toBeUndefined();
    });

    it("refuses a second record with the same id", async () => {
      const r = sampleRecord();
      await store.create(r);
      const err = await store.create({ ...r, name: "dup" }).catch((e: unknown) => e);
      expect(isMcpGateError(err, "ERR_INVALID_OPTION")).toBe(true);
      expect((await store.get(r.id))?.name).toBe(r.name);
    });

    it("does not let a caller mutate stored state through returned objects", async () => {
      const r = sampleRecord();
      await store.create(r);
      r.scopes.push("mutated");
      const got = await store.get(r.id);
      got!.scopes.push("again");
      expect((await store.get(r.id))?.scopes).toEqual(["tools:call"]);
    });

    it("lists records oldest first and filters by tenant", async () => {
      const a = sampleRecord({ tenant: "t1", createdAt: 3000 });
      const b = sampleRecord({ tenant: "t2", createdAt: 1000 });
      const c = sampleRecord({ tenant: "t1", createdAt: 2000 });
      for (const r of [a, b, c]) await store.create(r);
      expect((await store.list()).map((r) => r.id)).toEqual([b.id, c.id, a.id]);
      expect((await store.list({ tenant: "t1" })).map((r) => r.id)).toEqual([c.id, a.id]);
      expect(await store.list({ tenant: "nobody" })).toEqual([]);
    });

    it("revokes a key once and keeps the first revocation instant", async () => {
      const r = sampleRecord();
      await store.create(r);
      const first = await store.revoke(r.id, 5000);
      expect(first).toMatchObject({ ok: true, alreadyRevoked: false });
      const second = await store.revoke(r.id, 9000);
      expect(second).toMatchObject({ ok: true, alreadyRevoked: true });
      expect((await store.get(r.id))?.revokedAt).toBe(5000);
    });

    it("reports not_found when revoking an unknown id", async () => {
      expect(await store.revoke("ZZZZZZZZ", 1)).toEqual({ ok: false, reason: "not_found" });
    });

    it("rotates atomically: the successor is stored and the old key records its successor and grace end", async () => {
      const old = sampleRecord({ tenant: "acme" });
      await store.create(old);
      const next = sampleRecord({ tenant: "acme" });
      const r = await store.rotate(old.id, next, 123_456);
      expect(r.ok).toBe(true);
      const storedOld = await store.get(old.id);
      expect(storedOld).toMatchObject({ replacedBy: next.id, graceUntil: 123_456 });
      expect(await store.get(next.id)).toEqual({ ...next, replaces: old.id });
    });

    it("refuses to rotate an unknown, revoked or already rotated key and stores nothing then", async () => {
      const next1 = sampleRecord();
      expect(await store.rotate("ZZZZZZZZ", next1, 1)).toEqual({ ok: false, reason: "not_found" });
      expect(await store.get(next1.id)).toBeUndefined();

      const revoked = sampleRecord();
      await store.create(revoked);
      await store.revoke(revoked.id, 10);
      const next2 = sampleRecord();
      expect(await store.rotate(revoked.id, next2, 1)).toEqual({ ok: false, reason: "revoked" });
      expect(await store.get(next2.id)).toBeUndefined();

      const old = sampleRecord();
      await store.create(old);
      expect((await store.rotate(old.id, sampleRecord(), 1)).ok).toBe(true);
      const next3 = sampleRecord();
      expect(await store.rotate(old.id, next3, 1)).toEqual({ ok: false, reason: "already_rotated" });
      expect(await store.get(next3.id)).toBeUndefined();
    });

    it("rolls back a rotation whose successor id already exists", async () => {
      const old = sampleRecord();
      const other = sampleRecord();
      await store.create(old);
      await store.create(other);
      const err = await store.rotate(old.id, { ...sampleRecord(), id: other.id }, 1).catch((e: unknown) => e);
      expect(isMcpGateError(err, "ERR_INVALID_OPTION")).toBe(true);
      const storedOld = await store.get(old.id);
      expect(storedOld?.replacedBy).toBeUndefined();
      expect(storedOld?.graceUntil).toBeUndefined();
      expect((await store.get(other.id))?.name).toBe(other.name);
    });

    it("records last use in batches, keeping the latest instant and ignoring unknown ids", async () => {
      const a = sampleRecord();
      const b = sampleRecord();
      await store.create(a);
      await store.create(b);
      await store.touch([
        { id: a.id, at: 2000 },
        { id: a.id, at: 3000 },
        { id: b.id, at: 1000 },
        { id: "ZZZZZZZZ", at: 5000 },
      ]);
      await store.touch([{ id: a.id, at: 2500 }]);
      await store.touch([]);
      expect((await store.get(a.id))?.lastUsedAt).toBe(3000);
      expect((await store.get(b.id))?.lastUsedAt).toBe(1000);
    });

    it("keeps records across close and init when the store is persistent", async () => {
      const r = sampleRecord();
      await store.create(r);
      if (store.kind === "memory") return;
      await store.close();
      await store.init();
      expect(await store.get(r.id)).toEqual(r);
    });

    it("throws ERR_STORE_UNAVAILABLE when used after close", async () => {
      await store.close();
      const err = await store.get("ZZZZZZZZ").catch((e: unknown) => e);
      expect(isMcpGateError(err, "ERR_STORE_UNAVAILABLE")).toBe(true);
      await store.init();
    });
  });
}
