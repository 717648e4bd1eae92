import type pg from "pg";
import type { AuditEvent } from "../core/audit-event.js";
import { McpGateError } from "../core/errors.js";
import { openPostgresPool, postgresSchema } from "./pg-common.js";

/**
 * The audit trail's PostgreSQL table, used when PostgreSQL holds the API keys: one row per event in
 * `<schema>.audit_events`. It satisfies observe/audit.ts's `AuditSink` (structurally: stores sit
 * below observe and do not import it).
 */

export interface PostgresAuditSinkOptions {
  /** `postgres://user:pass@host:5432/db`. Ignored when `pool` is given. */
  connectionString?: string;
  /** An existing pool (not ended by `close()`). */
  pool?: pg.Pool;
  /** Schema holding the table. Default "mcpgate" (the key store's). */
  schema?: string;
  /** Pool size when the sink creates the pool. Default 2. */
  max?: number;
}

export interface PostgresAuditSink {
  readonly name: "postgres";
  /** Create the schema and table (idempotent, safe from several processes at once). */
  init(): Promise<void>;
  write(events: readonly AuditEvent[]): Promise<void>;
  close(): Promise<void>;
}

const COLUMNS = [
  "time",
  "type",
  "actor",
  "ip",
  "request_id",
  "reason",
  "method",
  "tool",
  "other",
  "session_id",
  "detail",
  "trace_id",
] as const;

function unavailable(err: unknown): McpGateError {
  // pg's messages name the host or the SQL problem, never the password.
  const code = (err as { code?: string })?.code ?? "error";
  return new McpGateError("ERR_STORE_UNAVAILABLE", `postgres audit table: ${code}`, { cause: err });
}

/**
 * Create the PostgreSQL audit sink. Nothing connects until `init()`.
 *
 * @example
 * const sink = createPostgresAuditSink({ connectionString: process.env.DATABASE_URL });
 * await sink.init();
 * const trail = createAuditTrail({ sinks: [sink] });
 */
export function createPostgresAuditSink(options: PostgresAuditSinkOptions): PostgresAuditSink {
  const schema = postgresSchema(options, "postgres audit table");
  const s = `"${schema}"`;
  const table = `${s}.audit_events`;
  const ownsPool = !options.pool;
  let pool: pg.Pool | undefined = options.pool;

  function ready(): pg.Pool {
    if (!pool)
      throw new McpGateError("ERR_STORE_UNAVAILABLE", "postgres audit table: not initialised (call init())");
    return pool;
  }

  return {
    name: "postgres",
    async init() {
      if (!pool) {
        pool = openPostgresPool(options.connectionString!, options.max ?? 2);
      }
      let client: pg.PoolClient | undefined;
      try {
        client = await pool.connect();
        await client.query("BEGIN");
        await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`mcpgate-audit:${schema}`]);
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${table} (
             id BIGSERIAL PRIMARY KEY,
             time TIMESTAMPTZ NOT NULL,
             type TEXT NOT NULL,
             actor TEXT, ip TEXT, request_id TEXT, reason TEXT, method TEXT, tool TEXT,
             other TEXT, session_id TEXT, detail JSONB, trace_id TEXT
           )`,
        );
        // Tables made before the column existed get it (the request's trace: docs/tracing.md).
        await client.query(`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS trace_id TEXT`);
        await client.query(`CREATE INDEX IF NOT EXISTS audit_events_time ON ${table} (time)`);
        await client.query("COMMIT");
      } catch (err) {
        await client?.query("ROLLBACK").catch(() => {});
        throw unavailable(err);
      } finally {
        client?.release();
      }
    },
    async write(events) {
      // PostgreSQL allows 65 535 parameters per statement: insert in chunks.
      for (let i = 0; i < events.length; i += 500) await insert(events.slice(i, i + 500));
    },
    async close() {
      const p = pool;
      pool = undefined;
      if (p && ownsPool) await p.end();
    },
  };

  async function insert(events: readonly AuditEvent[]): Promise<void> {
    const values: unknown[] = [];
    const rows = events.map((e, i) => {
      values.push(
        e.time,
        e.type,
        e.actor ?? null,
        e.ip ?? null,
        e.requestId ?? null,
        e.reason ?? null,
        e.method ?? null,
        e.tool ?? null,
        e.other ?? null,
        e.sessionId ?? null,
        e.detail ? JSON.stringify(e.detail) : null,
        e.trace_id ?? null,
      );
      const base = i * COLUMNS.length;
      return `(${COLUMNS.map((_, j) => `$${base + j + 1}`).join(", ")})`;
    });
    try {
      await ready().query(`INSERT INTO ${table} (${COLUMNS.join(", ")}) VALUES ${rows.join(", ")}`, values);
    } catch (err) {
      if (err instanceof McpGateError) throw err;
      throw unavailable(err);
    }
  }
}
