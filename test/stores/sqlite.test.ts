import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { issueApiKey, rotateApiKey } from "../../src/authn/key-lifecycle.js";
import { createSqliteKeyStore } from "../../src/stores/sqlite.js";
import { describeKeyStoreContract } from "./key-store-contract.js";

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "mcpgate-sqlite-"));
let n = 0;
const freshPath = () => join(dir, `keys-${++n}.db`);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeKeyStoreContract("sqlite", async () => {
  const store = createSqliteKeyStore({ path: freshPath() });
  await store.init();
  return { store, dispose: () => store.close() };
});

describe("SQLite key store", () => {
  it("creates the file on first use, in WAL mode, at the latest schema version", async () => {
    const path = freshPath();
    const store = createSqliteKeyStore({ path });
    expect(existsSync(path)).toBe(false);
    await store.init();
    expect(existsSync(path)).toBe(true);
    await store.close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("user_version", { simple: true })).toBe(1);
    const plan = db.prepare("EXPLAIN QUERY PLAN SELECT * FROM api_keys WHERE id = ?").all("x") as {
      detail: string;
    }[];
    expect(plan.map((p) => p.detail).join(" ")).toMatch(/SEARCH api_keys USING PRIMARY KEY/);
    db.close();
  });

  it("runs init twice on the same file without re-applying migrations", async () => {
    const path = freshPath();
    const a = createSqliteKeyStore({ path });
    await a.init();
    const { record } = await issueApiKey(a, { name: "kept" });
    await a.close();
    const b = createSqliteKeyStore({ path });
    await b.init();
    expect((await b.get(record.id))?.name).toBe("kept");
    await b.close();
  });

  it("never writes a key or secret into the database files", async () => {
    const path = freshPath();
    const store = createSqliteKeyStore({ path });
    await store.init();
    const secrets: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { key } = await issueApiKey(store, { name: `k${i}`, scopes: ["tools:call"] });
      secrets.push(key);
    }
    const rotated = await rotateApiKey(store, secrets[0]!.slice(5, 13), { graceMs: 60_000 });
    if (!rotated.ok) throw new Error("rotation failed");
    secrets.push(rotated.key);
    // Inspect the WAL too: read the bytes while the store is still open, then after checkpoint.
    const scan = () => {
      for (const f of readdirSync(dir).filter((f) => f.startsWith(path.split("/").pop()!))) {
        const bytes = readFileSync(join(dir, f)).toString("latin1");
        for (const key of secrets) {
          expect(bytes.includes(key)).toBe(false);
          expect(bytes.includes(key.split("_")[2]!)).toBe(false);
          expect(bytes.includes(key.split("_")[2]!.slice(0, 16))).toBe(false);
        }
      }
    };
    scan();
    await store.close();
    scan();
    // The scan can fail: the ids are in the file, so it is really reading the bytes.
    expect(readFileSync(path).toString("latin1")).toContain(secrets[1]!.slice(5, 13));
  });

  it("lets several processes create keys in one new file at the same time", async () => {
    const path = freshPath();
    const script = join(import.meta.dirname, "fixtures", "create-keys.ts");
    const spawn = () =>
      run(process.execPath, ["--import", "tsx", script, path, "200"], { cwd: process.cwd() });
    const outs = await Promise.all([spawn(), spawn(), spawn()]);
    const ids = outs.flatMap((o) => JSON.parse(o.stdout) as string[]);
    expect(ids).toHaveLength(600);
    const store = createSqliteKeyStore({ path });
    await store.init();
    const listed = (await store.list()).map((r) => r.id).sort();
    expect(listed).toEqual([...ids].sort());
    await store.close();
  });

  it("reports ERR_STORE_UNAVAILABLE when the file cannot be opened", async () => {
    const store = createSqliteKeyStore({ path: join(dir, "missing-dir", "x.db") });
    await expect(store.init()).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
  });
});
