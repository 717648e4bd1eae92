import type pg from "pg";
import { McpGateError } from "../core/errors.js";
import { KEY_COLUMNS, type KeyRow, recordToValues, rowToRecord } from "./key-rows.js";
import type { KeyRecord, KeyStore, RevokeResult, RotateResult } from "./key-store.js";
import { openPostgresPool, postgresSchema } from "./pg-common.js";

// `mcpgate/stores/postgres` is this file: the audit table beside the keys is part of the entry.
export {
  createPostgresAuditSink,
  type PostgresAuditSink,
  type PostgresAuditSinkOptions,
} from "./postgres-audit.js";

/**
 * PostgreSQL key store (`pg`, pooled): for several gateway instances sharing one key database.
 * Tables live in a configurable schema (default `mcpgate`); migrations are recorded in
 * `<schema>.mcpgate_migrations` and applied under a transaction-scoped advisory lock, so instances
 * starting together do not race.
 */

export interface PostgresKeyStoreOptions {
  /** `postgres://user:pass@host:5432/db`. Ignored when `pool` is given. */
  connectionString?: string;
  /** An existing pool (not ended by `close()`). */
  pool?: pg.Pool;
  /** Schema holding the tables. Default "mcpgate". Letters, digits and `_` only. */
  schema?: string;
  /** Pool size when the store creates the pool. Default 10. */
  max?: number;
  /** Connection timeout when the store creates the pool. Default 5000. */
  connectionTimeoutMs?: number;
}

// Each entry moves the schema from version i to i+1. `{s}` is the quoted schema name.
const MIGRATIONS: string[] = [
  `CREATE TABLE {s}.api_keys (
     id TEXT PRIMARY KEY,
     hash TEXT NOT NULL,
     name TEXT NOT NULL,
     tenant TEXT,
     scopes TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     expires_at BIGINT,
     revoked_at BIGINT,
     last_used_at BIGINT,
     probe BOOLEAN NOT NULL DEFAULT FALSE,
     replaces TEXT,
     replaced_by TEXT,
     grace_until BIGINT,
     rate_limit TEXT
   );
   CREATE INDEX api_keys_tenant ON {s}.api_keys (tenant);`,
];

// Connection errors can carry the host; never the password (pg does not echo it). Keep the code only
// plus the first line so a user sees "ECONNREFUSED" and not a stack.
function unavailable(err: unknown): McpGateError {
  const code = (err as { code?: string })?.code ?? "error";
  const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
  return new McpGateError("ERR_STORE_UNAVAILABLE", `postgres key store: ${code}: ${msg}`, { cause: err });
}

function isDuplicate(err: unknown): boolean {
  return (err as { code?: string })?.code === "23505";
}

/**
 * Create a PostgreSQL key store. Nothing connects until `init()`.
 *
 * @example
 * const store = createPostgresKeyStore({ connectionString: process.env.DATABASE_URL, schema: "mcpgate" });
 * await store.init();
 */
export function createPostgresKeyStore(options: PostgresKeyStoreOptions): KeyStore {
  const schema = postgresSchema(options, "postgres key store");
  const s = `"${schema}"`;
  const table = `${s}.api_keys`;
  const ownsPool = !options.pool;
  let pool: pg.Pool | undefined = options.pool;

  const p = KEY_COLUMNS.map((_, i) => `$${i + 1}`).join(", ");
  const insertSql = `INSERT INTO ${table} (${KEY_COLUMNS.join(", ")}) VALUES (${p})`;

  function ready(): pg.Pool {
    if (!pool)
      throw new McpGateError("ERR_STORE_UNAVAILABLE", "postgres key store: not initialised (call init())");
    return pool;
  }

  async function query<R extends pg.QueryResultRow>(
    sql: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await ready().query<R>(sql, values);
    } catch (err) {
      if (err instanceof McpGateError) throw err;
      throw unavailable(err);
    }
  }

  async function inTransaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await ready().connect();
    } catch (err) {
      if (err instanceof McpGateError) throw err;
      throw unavailable(err);
    }
    try {
      await client.query("BEGIN");
      const out = await fn(client);
      await client.query("COMMIT");
      return out;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async function migrate(): Promise<void> {
    await inTransaction(async (c) => {
      // One lock per schema name: concurrent init() calls apply each migration exactly once.
      await c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`mcpgate-migrate:${schema}`]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await c.query(
        `CREATE TABLE IF NOT EXISTS ${s}.mcpgate_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`,
      );
      const { rows } = await c.query<{ v: number | null }>(
        `SELECT max(version) AS v FROM ${s}.mcpgate_migrations`,
      );
      const current = rows[0]?.v ?? 0;
      for (let v = current; v < MIGRATIONS.length; v++) {
        await c.query(MIGRATIONS[v]!.replaceAll("{s}", s));
        await c.query(`INSERT INTO ${s}.mcpgate_migrations (version, applied_at) VALUES ($1, $2)`, [
          v + 1,
          Date.now(),
        ]);
      }
    });
  }

  return {
    kind: "postgres",
    async init() {
      if (!pool) {
        pool = openPostgresPool(options.connectionString!, options.max ?? 10, options.connectionTimeoutMs);
      }
      try {
        await migrate();
      } catch (err) {
        if (ownsPool) {
          const p0 = pool;
          pool = undefined;
          await p0?.end().catch(() => {});
        }
        if (err instanceof McpGateError) throw err;
        throw unavailable(err);
      }
    },
    async close() {
      const p0 = pool;
      pool = undefined;
      if (ownsPool) await p0?.end();
    },
    async create(record: KeyRecord) {
      try {
        await ready().query(insertSql, recordToValues(record, true));
      } catch (err) {
        if (isDuplicate(err))
          throw new McpGateError("ERR_INVALID_OPTION", `key id ${record.id} already exists`);
        if (err instanceof McpGateError) throw err;
        throw unavailable(err);
      }
    },
    async get(id) {
      const { rows } = await query<KeyRow>(`SELECT * FROM ${table} WHERE id = $1`, [id]);
      return rows[0] ? rowToRecord(rows[0]) : undefined;
    },
    async list(filter) {
      const { rows } =
        filter?.tenant === undefined
          ? await query<KeyRow>(`SELECT * FROM ${table} ORDER BY created_at, id`)
          : await query<KeyRow>(`SELECT * FROM ${table} WHERE tenant = $1 ORDER BY created_at, id`, [
              filter.tenant,
            ]);
      return rows.map(rowToRecord);
    },
    async revoke(id, at = Date.now()): Promise<RevokeResult> {
      return inTransaction(async (c): Promise<RevokeResult> => {
        const { rows } = await c.query<KeyRow>(`SELECT * FROM ${table} WHERE id = $1 FOR UPDATE`, [id]);
        const row = rows[0];
        if (!row) return { ok: false, reason: "not_found" };
        if (row.revoked_at !== null) return { ok: true, record: rowToRecord(row), alreadyRevoked: true };
        const upd = await c.query<KeyRow>(`UPDATE ${table} SET revoked_at = $2 WHERE id = $1 RETURNING *`, [
          id,
          at,
        ]);
        return { ok: true, record: rowToRecord(upd.rows[0]!), alreadyRevoked: false };
      }).catch((err) => {
        throw err instanceof McpGateError ? err : unavailable(err);
      });
    },
    async rotate(oldId, next, graceUntil): Promise<RotateResult> {
      try {
        return await inTransaction(async (c): Promise<RotateResult> => {
          const { rows } = await c.query<KeyRow>(`SELECT * FROM ${table} WHERE id = $1 FOR UPDATE`, [oldId]);
          const row = rows[0];
          if (!row) return { ok: false, reason: "not_found" };
          if (row.revoked_at !== null) return { ok: false, reason: "revoked" };
          if (row.replaced_by !== null) return { ok: false, reason: "already_rotated" };
          await c.query(insertSql, recordToValues({ ...next, replaces: oldId }, true));
          const upd = await c.query<KeyRow>(
            `UPDATE ${table} SET replaced_by = $1, grace_until = $2 WHERE id = $3 RETURNING *`,
            [next.id, graceUntil, oldId],
          );
          return { ok: true, old: rowToRecord(upd.rows[0]!) };
        });
      } catch (err) {
        if (isDuplicate(err))
          throw new McpGateError("ERR_INVALID_OPTION", `key id ${next.id} already exists`);
        if (err instanceof McpGateError) throw err;
        throw unavailable(err);
      }
    },
    async touch(entries) {
      if (entries.length === 0) return;
      // One statement per batch; duplicates collapsed first (UPDATE … FROM picks an arbitrary match).
      const latest = new Map<string, number>();
      for (const { id, at } of entries) latest.set(id, Math.max(at, latest.get(id) ?? 0));
      await query(
        `UPDATE ${table} AS t SET last_used_at = v.at
           FROM unnest($1::text[], $2::bigint[]) AS v(id, at)
          WHERE t.id = v.id AND (t.last_used_at IS NULL OR t.last_used_at < v.at)`,
        [[...latest.keys()], [...latest.values()]],
      );
    },
  };
}
