import type pg from "pg";
import { McpGateError } from "../core/errors.js";
import {
  expiryOf,
  type OAuthPayload,
  type OAuthRecordStore,
  oauthStoreUnavailable,
  serializeOAuthPayload,
} from "./oauth-records.js";
import { openPostgresPool, postgresSchema } from "./pg-common.js";

/** Options of {@link createPostgresOAuthStore}. */
export interface PostgresOAuthStoreOptions {
  /** `postgres://…`. Ignored when `pool` is given. */
  connectionString?: string;
  /** An existing pool (not ended by `close()`). */
  pool?: pg.Pool;
  /** Schema holding the table (the key store's). Default "mcpgate". */
  schema?: string;
  /** Pool size when the store creates the pool. Default 5. */
  max?: number;
}

/**
 * The authorization server's records in PostgreSQL (DESIGN.md §9 `authServer.store`), in the key
 * store's schema, so every gateway instance serves the same clients, grants and refresh tokens.
 * DDL is idempotent and runs under an advisory lock.
 *
 * @example
 * const store = createPostgresOAuthStore({ connectionString: process.env.DATABASE_URL });
 * await store.init();
 */
export function createPostgresOAuthStore(options: PostgresOAuthStoreOptions): OAuthRecordStore {
  const schema = postgresSchema(options, "postgres oauth store");
  const t = `"${schema}".oauth_records`;
  const ownsPool = !options.pool;
  let pool: pg.Pool | undefined = options.pool;
  let writes = 0;
  const alive = "(expires_at IS NULL OR expires_at > $3)";

  async function query<R extends pg.QueryResultRow>(
    sql: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    if (!pool)
      throw new McpGateError("ERR_STORE_UNAVAILABLE", "postgres oauth store: not initialised (call init())");
    try {
      return await pool.query<R>(sql, values);
    } catch (err) {
      throw oauthStoreUnavailable("postgres", err);
    }
  }

  const first = (r: pg.QueryResult<{ payload: OAuthPayload }>) => r.rows[0]?.payload;

  return {
    kind: "postgres",
    async init() {
      if (!pool) {
        pool = openPostgresPool(options.connectionString!, options.max ?? 5);
      }
      let client: pg.PoolClient | undefined;
      try {
        client = await pool.connect();
        await client.query("BEGIN");
        await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`mcpgate-oauth:${schema}`]);
        await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
        await client.query(`CREATE TABLE IF NOT EXISTS ${t} (
          model TEXT NOT NULL, id TEXT NOT NULL, payload JSONB NOT NULL, uid TEXT, grant_id TEXT,
          expires_at BIGINT, PRIMARY KEY (model, id))`);
        await client.query(`CREATE INDEX IF NOT EXISTS oauth_records_uid ON ${t} (model, uid)`);
        await client.query(`CREATE INDEX IF NOT EXISTS oauth_records_grant ON ${t} (grant_id)`);
        await client.query("COMMIT");
      } catch (err) {
        await client?.query("ROLLBACK").catch(() => {});
        throw oauthStoreUnavailable("postgres", err);
      } finally {
        client?.release();
      }
    },
    async close() {
      const p = pool;
      pool = undefined;
      if (p && ownsPool) await p.end();
    },
    async upsert(model, id, payload, expiresInSec) {
      const text = serializeOAuthPayload(payload);
      if (++writes % 256 === 0) {
        await query(`DELETE FROM ${t} WHERE expires_at IS NOT NULL AND expires_at <= $1`, [Date.now()]);
      }
      await query(
        `INSERT INTO ${t} (model, id, payload, uid, grant_id, expires_at) VALUES ($1, $2, $3::jsonb, $4, $5, $6)
         ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload, uid = EXCLUDED.uid,
           grant_id = EXCLUDED.grant_id, expires_at = EXCLUDED.expires_at`,
        [model, id, text, payload.uid ?? null, payload.grantId ?? null, expiryOf(expiresInSec)],
      );
    },
    async insertIfAbsent(model, id, payload, expiresInSec) {
      const text = serializeOAuthPayload(payload);
      const row = [model, id, text, payload.uid ?? null, payload.grantId ?? null, expiryOf(expiresInSec)];
      // A conflicting row is locked and kept unless expired; RETURNING is then empty, and a second
      // statement (a fresh snapshot) reads the row the other instance committed. Again if that row
      // went away in between (destroyed or expired).
      for (let attempt = 0; attempt < 3; attempt++) {
        const now = Date.now();
        const inserted = await query<{ payload: OAuthPayload }>(
          `INSERT INTO ${t} (model, id, payload, uid, grant_id, expires_at) VALUES ($1, $2, $3::jsonb, $4, $5, $6)
           ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload, uid = EXCLUDED.uid,
             grant_id = EXCLUDED.grant_id, expires_at = EXCLUDED.expires_at
           WHERE ${t}.expires_at IS NOT NULL AND ${t}.expires_at <= $7 RETURNING payload`,
          [...row, now],
        );
        const stored =
          first(inserted) ??
          first(
            await query(`SELECT payload FROM ${t} WHERE model = $1 AND id = $2 AND ${alive}`, [
              model,
              id,
              now,
            ]),
          );
        if (stored) return stored;
      }
      throw new McpGateError("ERR_STORE_UNAVAILABLE", `postgres oauth store: ${model} record kept changing`);
    },
    async find(model, id) {
      return first(
        await query(`SELECT payload FROM ${t} WHERE model = $1 AND id = $2 AND ${alive}`, [
          model,
          id,
          Date.now(),
        ]),
      );
    },
    async findByUid(model, uid) {
      return first(
        await query(`SELECT payload FROM ${t} WHERE model = $1 AND uid = $2 AND ${alive} LIMIT 1`, [
          model,
          uid,
          Date.now(),
        ]),
      );
    },
    async consume(model, id) {
      await query(
        `UPDATE ${t} SET payload = jsonb_set(payload, '{consumed}', to_jsonb($3::bigint)) WHERE model = $1 AND id = $2`,
        [model, id, Math.floor(Date.now() / 1000)],
      );
    },
    async destroy(model, id) {
      await query(`DELETE FROM ${t} WHERE model = $1 AND id = $2`, [model, id]);
    },
    async revokeByGrantId(grantId) {
      await query(`DELETE FROM ${t} WHERE grant_id = $1`, [grantId]);
    },
    async count(model) {
      const r = await query<{ n: string }>(
        `SELECT COUNT(*) AS n FROM ${t} WHERE model = $1 AND (expires_at IS NULL OR expires_at > $2)`,
        [model, Date.now()],
      );
      return Number(r.rows[0]?.n ?? 0);
    },
    async extend(model, id, expiresInSec) {
      const now = Date.now();
      const r = await query(`UPDATE ${t} SET expires_at = $4 WHERE model = $1 AND id = $2 AND ${alive}`, [
        model,
        id,
        now,
        expiryOf(expiresInSec, now),
      ]);
      return (r.rowCount ?? 0) > 0;
    },
    async expireUnbounded(model, expiresInSec) {
      const r = await query(`UPDATE ${t} SET expires_at = $2 WHERE model = $1 AND expires_at IS NULL`, [
        model,
        expiryOf(expiresInSec),
      ]);
      return r.rowCount ?? 0;
    },
  };
}
