import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey, rotateApiKey } from "../../src/authn/key-lifecycle.js";
import { createPostgresKeyStore } from "../../src/stores/postgres.js";
import { describeKeyStoreContract } from "./key-store-contract.js";

const url = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const runId = randomBytes(4).toString("hex");
const schemas: string[] = [];
let n = 0;
const freshSchema = () => {
  const s = `mcpgate_test_${runId}_${++n}`;
  schemas.push(s);
  return s;
};

let admin: pg.Pool;
beforeAll(() => {
  admin = new pg.Pool({ connectionString: url, max: 2 });
});
afterAll(async () => {
  for (const s of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await admin.end();
});

describeKeyStoreContract("postgres", async () => {
  const store = createPostgresKeyStore({ connectionString: url, schema: freshSchema(), max: 4 });
  await store.init();
  return { store, dispose: () => store.close() };
});

describe("PostgreSQL key store", () => {
  it("applies migrations once even when several instances initialise the same schema together", async () => {
    const schema = freshSchema();
    const stores = Array.from({ length: 4 }, () =>
      createPostgresKeyStore({ connectionString: url, schema, max: 2 }),
    );
    await Promise.all(stores.map((s) => s.init()));
    const { rows } = await admin.query(`SELECT version FROM "${schema}".mcpgate_migrations ORDER BY version`);
    expect(rows.map((r) => r.version)).toEqual([1]);
    await Promise.all(stores.map((s) => s.close()));
  });

  it("looks a key up by its primary-key index", async () => {
    const schema = freshSchema();
    const store = createPostgresKeyStore({ connectionString: url, schema });
    await store.init();
    const { rows } = await admin.query(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'api_keys'`,
      [schema],
    );
    expect(rows.map((r) => r.indexdef).join("\n")).toMatch(/UNIQUE INDEX api_keys_pkey .*\(id\)/);
    await store.close();
  });

  it("never stores a key or any part of its secret in the table", async () => {
    const schema = freshSchema();
    const store = createPostgresKeyStore({ connectionString: url, schema });
    await store.init();
    const keys: string[] = [];
    for (let i = 0; i < 5; i++) keys.push((await issueApiKey(store, { name: `k${i}`, tenant: "acme" })).key);
    const rotated = await rotateApiKey(store, keys[0]!.slice(5, 13), { graceMs: 1000 });
    if (!rotated.ok) throw new Error("rotation failed");
    keys.push(rotated.key);
    const { rows } = await admin.query(`SELECT * FROM "${schema}".api_keys`);
    const dump = JSON.stringify(rows);
    expect(rows).toHaveLength(6);
    for (const key of keys) {
      expect(dump).toContain(key.slice(5, 13));
      expect(dump.includes(key)).toBe(false);
      expect(dump.includes(key.split("_")[2]!.slice(0, 16))).toBe(false);
    }
    await store.close();
  });

  it("refuses a schema name that is not a plain identifier", () => {
    expect(() => createPostgresKeyStore({ connectionString: url, schema: 'x"; DROP TABLE y; --' })).toThrow(
      /schema must match/,
    );
  });

  it("reports ERR_STORE_UNAVAILABLE when the server cannot be reached", async () => {
    const store = createPostgresKeyStore({
      connectionString: "postgres://postgres@127.0.0.1:1/test",
      connectionTimeoutMs: 2000,
    });
    await expect(store.init()).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
  });
});
