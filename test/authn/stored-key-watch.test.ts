import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { createApiKeyVerifier } from "../../src/authn/stored-key.js";
import type { Identity } from "../../src/core/identity.js";
import type { KeyStore } from "../../src/stores/key-store.js";
import { createSqliteKeyStore } from "../../src/stores/sqlite.js";

/**
 * Issue 14 item 5 (the verifier's part): a stream opened with a stored key learns of the key's
 * revocation within 1 s (polling), at once when a revocation feed calls invalidate(id), and a
 * stream that ended is no longer watched.
 */
describe("watching a stored key while its streams last", () => {
  let dir: string;
  let store: KeyStore;
  let gets = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-watch-"));
    const inner = createSqliteKeyStore({ path: join(dir, "keys.db") });
    await inner.init();
    store = {
      ...inner,
      get: (id) => {
        gets++;
        return inner.get(id);
      },
    };
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function verified(v: ReturnType<typeof createApiKeyVerifier>) {
    const issued = await issueApiKey(store, { name: "w", scopes: ["tools:call"] });
    const r = await v.verify(issued.key);
    if (!r.ok) throw new Error(r.reason);
    return { id: issued.record.id, identity: r.identity };
  }

  const aborted = (s: AbortSignal) =>
    new Promise<void>((r) => s.addEventListener("abort", () => r(), { once: true }));

  it("ends a watched stream within about a second of `keys revoke` (no feed: polling)", async () => {
    const v = createApiKeyVerifier({ store });
    try {
      const { id, identity } = await verified(v);
      const stream = new AbortController();
      const signal = v.watch(identity, stream.signal)!;
      expect(signal.aborted).toBe(false);
      const t0 = performance.now();
      await store.revoke(id);
      await aborted(signal);
      const ms = performance.now() - t0;
      expect(ms).toBeLessThan(1500);
      stream.abort();
    } finally {
      await v.close();
    }
  });

  it("ends it at once when a revocation feed invalidates the key", async () => {
    const v = createApiKeyVerifier({ store });
    try {
      const { id, identity } = await verified(v);
      const signal = v.watch(identity, new AbortController().signal)!;
      await store.revoke(id);
      const t0 = performance.now();
      v.invalidate(id);
      await aborted(signal);
      expect(performance.now() - t0).toBeLessThan(500);
    } finally {
      await v.close();
    }
  });

  it("keeps streams of a key that stays valid, and stops watching once every stream ended", async () => {
    const v = createApiKeyVerifier({ store });
    try {
      const { identity } = await verified(v);
      const a = new AbortController();
      const b = new AbortController();
      const sa = v.watch(identity, a.signal)!;
      const sb = v.watch(identity, b.signal)!;
      await new Promise((r) => setTimeout(r, 1200));
      expect(sa.aborted || sb.aborted).toBe(false);
      a.abort();
      b.abort();
      const before = gets;
      await new Promise((r) => setTimeout(r, 1200));
      expect(gets).toBe(before);
    } finally {
      await v.close();
    }
  });

  it("does not watch what is not a stored key", () => {
    const v = createApiKeyVerifier({ store });
    const oauth: Identity = { principal: "oauth:x#y", kind: "oauth2", subject: "y", scopes: [] };
    expect(v.watch(oauth, new AbortController().signal)).toBeUndefined();
    void v.close();
  });
});
