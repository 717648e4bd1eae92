import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { sharedSecret } from "../../src/authserver/shared-secret.js";
import { createPostgresOAuthStore } from "../../src/stores/oauth-postgres.js";
import { createMemoryOAuthStore, type OAuthRecordStore } from "../../src/stores/oauth-records.js";
import { createRedisOAuthStore } from "../../src/stores/oauth-redis.js";
import { createSqliteOAuthStore } from "../../src/stores/oauth-sqlite.js";

const PG_URL = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const run = randomBytes(4).toString("hex");
const dir = mkdtempSync(join(tmpdir(), "mcpgate-secret-"));
const schema = `oauth_secret_${run}`;
const prefix = `mcpgate-test-secret-${run}:`;
/** Gateway instances starting at once on one database. */
const INSTANCES = 12;

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

const memory = createMemoryOAuthStore(); // one process: every "instance" shares it
const backends: Array<[string, () => OAuthRecordStore]> = [
  ["memory", () => memory],
  ["sqlite", () => createSqliteOAuthStore({ path: join(dir, "secret.db") })],
  ["postgres", () => createPostgresOAuthStore({ connectionString: PG_URL, schema })],
  ["redis", () => createRedisOAuthStore({ url: REDIS_URL, prefix })],
];

describe.each(backends)("the shared cookie keys, %s", (name, make) => {
  it("are one value for every instance creating them at the same moment", async () => {
    const stores = Array.from({ length: INSTANCES }, make);
    for (const s of new Set(stores)) await s.init();
    try {
      const id = `cookie-keys-${name}`;
      // Each instance makes its own candidate, some faster than others (as key generation and
      // network round trips are), so creations interleave with the other instances' writes.
      const results = await Promise.all(
        stores.map((store) =>
          sharedSecret(store, id, async () => {
            await new Promise((r) => setTimeout(r, Math.random() * 20));
            return { cookieKeys: [randomBytes(32).toString("base64url")] };
          }),
        ),
      );
      const values = new Set(results.map((r) => JSON.stringify(r)));
      expect(values.size).toBe(1);
      expect(await stores[0]!.find("Secret", id)).toEqual(results[0]);
      // A later instance reads the same keys and makes none.
      const later = await sharedSecret(stores[1]!, id, async () => {
        throw new Error("the keys exist: nothing to make");
      });
      expect(later).toEqual(results[0]);
    } finally {
      for (const s of new Set(stores)) await s.close();
    }
  });
});
