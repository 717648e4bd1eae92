import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Redis } from "ioredis";
import pg from "pg";
import { createPostgresOAuthStore } from "../../src/stores/oauth-postgres.js";
import { createMemoryOAuthStore, type OAuthRecordStore } from "../../src/stores/oauth-records.js";
import { createRedisOAuthStore } from "../../src/stores/oauth-redis.js";
import { createSqliteOAuthStore } from "../../src/stores/oauth-sqlite.js";

export const PG_URL = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** The four OAuth record backends. */
export type OAuthBackend = "memory" | "sqlite" | "postgres" | "redis";
export const OAUTH_BACKENDS: readonly OAuthBackend[] = ["memory", "sqlite", "postgres", "redis"];

/**
 * Where one test's OAuth records live on every backend: a SQLite file in a temporary folder, a
 * PostgreSQL schema and a Redis key prefix of its own, so runs never collide. `records` and
 * `record` read what is stored behind the store's back (the tests that check nothing is kept in
 * clear). `cleanup` removes all of it.
 */
export interface OAuthTestPlace {
  readonly run: string;
  readonly schema: string;
  readonly prefix: string;
  /** A new store on this place (a separate connection: another "instance"). */
  store(backend: OAuthBackend): OAuthRecordStore;
  /** Everything stored, as text: rows, or Redis keys and values. */
  records(backend: Exclude<OAuthBackend, "memory">): Promise<string>;
  /** One record's payload as stored, or undefined. */
  record(backend: "sqlite" | "postgres", model: string, id: string): Promise<string | undefined>;
  cleanup(): Promise<void>;
}

/**
 * @example
 * const place = oauthTestPlace("oauth_ids");
 * afterAll(() => place.cleanup());
 * const store = place.store("postgres");
 */
export function oauthTestPlace(tag: string): OAuthTestPlace {
  const run = randomBytes(4).toString("hex");
  const dir = mkdtempSync(join(tmpdir(), `mcpgate-${tag}-`));
  const schema = `${tag}_${run}`;
  const prefix = `mcpgate-test-${tag}-${run}:`;
  const sqlitePath = join(dir, "oauth.db");

  async function query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    try {
      return (await c.query(sql, params)).rows as T[];
    } finally {
      await c.end();
    }
  }
  function sqlite<T>(read: (db: Database.Database) => T): T {
    const db = new Database(sqlitePath, { readonly: true });
    try {
      return read(db);
    } finally {
      db.close();
    }
  }

  return {
    run,
    schema,
    prefix,
    store(backend) {
      switch (backend) {
        case "memory":
          return createMemoryOAuthStore();
        case "sqlite":
          return createSqliteOAuthStore({ path: sqlitePath });
        case "postgres":
          return createPostgresOAuthStore({ connectionString: PG_URL, schema });
        case "redis":
          return createRedisOAuthStore({ url: REDIS_URL, prefix });
      }
    },
    async records(backend) {
      if (backend === "sqlite")
        return JSON.stringify(sqlite((db) => db.prepare("SELECT * FROM oauth_records").all()));
      if (backend === "postgres")
        return JSON.stringify(
          await query(
            `SELECT model, id, payload::text AS payload, uid, grant_id FROM "${schema}".oauth_records`,
          ),
        );
      const redis = new Redis(REDIS_URL);
      try {
        const out: string[] = [];
        for (const key of await redis.keys(`${prefix}*`)) {
          const type = await redis.type(key);
          const value = type === "set" ? (await redis.smembers(key)).join(" ") : await redis.get(key);
          out.push(`${key} ${value}`);
        }
        return out.join("\n");
      } finally {
        redis.disconnect();
      }
    },
    async record(backend, model, id) {
      if (backend === "sqlite") {
        const row = sqlite(
          (db) =>
            db.prepare("SELECT payload FROM oauth_records WHERE model = ? AND id = ?").get(model, id) as
              | { payload: string }
              | undefined,
        );
        return row?.payload;
      }
      const [row] = await query<{ payload: string }>(
        `SELECT payload::text AS payload FROM "${schema}".oauth_records WHERE model = $1 AND id = $2`,
        [model, id],
      );
      return row?.payload;
    },
    async cleanup() {
      rmSync(dir, { recursive: true, force: true });
      await query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      const redis = new Redis(REDIS_URL);
      try {
        const keys = await redis.keys(`${prefix}*`);
        if (keys.length > 0) await redis.del(...keys);
      } finally {
        redis.disconnect();
      }
    },
  };
}
