import type pg from "pg";
import { McpGateError } from "../core/errors.js";
import { openPostgresPool, postgresSchema } from "./pg-common.js";
import {
  type EventRow,
  type HistoryStore,
  RESULT_COLUMNS,
  type ResultRow,
  recordValues,
  rowToEvent,
  rowToRecord,
} from "./probe-history.js";

/**
 * Probe history in PostgreSQL, for several monitors sharing one history or a managed database.
 * Tables `monitor_results` and `monitor_events` in `schema` (default `mcpgate`).
 *
 * @example
 * const history = createPostgresHistory({ connectionString: process.env.DATABASE_URL! });
 * await history.init();
 */
export function createPostgresHistory(options: { connectionString: string; schema?: string }): HistoryStore {
  const schema = postgresSchema(options, "postgres probe history");
  const s = `"${schema}"`;
  // Bounded connection wait: an unreachable database fails the query rather than hanging it.
  const pool = openPostgresPool(options.connectionString, 4);
  const query = async <R extends pg.QueryResultRow>(sql: string, values: unknown[] = []): Promise<R[]> => {
    try {
      return (await pool.query<R>(sql, values)).rows;
    } catch (err) {
      const code = (err as { code?: string }).code ?? "error";
      throw new McpGateError("ERR_STORE_UNAVAILABLE", `postgres history: ${code}`, { cause: err });
    }
  };
  return {
    async init() {
      await query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await query(`CREATE TABLE IF NOT EXISTS ${s}.monitor_results (
          id BIGSERIAL PRIMARY KEY, target TEXT NOT NULL, at BIGINT NOT NULL, status TEXT NOT NULL,
          http_status INTEGER NOT NULL, latency_ms DOUBLE PRECISION NOT NULL, tools INTEGER, schema_hash TEXT,
          challenge TEXT NOT NULL, error TEXT, steps TEXT NOT NULL)`);
      await query(
        `CREATE INDEX IF NOT EXISTS monitor_results_target_at ON ${s}.monitor_results (target, at)`,
      );
      await query(`CREATE TABLE IF NOT EXISTS ${s}.monitor_events (
          id BIGSERIAL PRIMARY KEY, target TEXT NOT NULL, at BIGINT NOT NULL, kind TEXT NOT NULL,
          message TEXT NOT NULL, detail TEXT NOT NULL)`);
      await query(`CREATE INDEX IF NOT EXISTS monitor_events_target_at ON ${s}.monitor_events (target, at)`);
    },
    async record(r) {
      await query(
        `INSERT INTO ${s}.monitor_results (${RESULT_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`,
        recordValues(r),
      );
    },
    async recordEvent(e) {
      await query(
        `INSERT INTO ${s}.monitor_events (target, at, kind, message, detail) VALUES ($1,$2,$3,$4,$5)`,
        [e.target, e.at, e.kind, e.message, JSON.stringify(e.detail)],
      );
    },
    async results(target, sinceMs, limit = 10_000) {
      const rows = await query<ResultRow>(
        `SELECT ${RESULT_COLUMNS} FROM ${s}.monitor_results WHERE target = $1 AND at >= $2 ORDER BY at DESC, id DESC LIMIT $3`,
        [target, sinceMs, limit],
      );
      return rows.reverse().map(rowToRecord);
    },
    async last(target) {
      const rows = await query<ResultRow>(
        `SELECT ${RESULT_COLUMNS} FROM ${s}.monitor_results WHERE target = $1 ORDER BY at DESC, id DESC LIMIT 1`,
        [target],
      );
      return rows[0] ? rowToRecord(rows[0]) : undefined;
    },
    async uptime(target, sinceMs) {
      const rows = await query<{ checks: string; up: string }>(
        `SELECT COUNT(*) AS checks, COUNT(*) FILTER (WHERE status = 'up') AS up FROM ${s}.monitor_results WHERE target = $1 AND at >= $2`,
        [target, sinceMs],
      );
      return { checks: Number(rows[0]?.checks ?? 0), up: Number(rows[0]?.up ?? 0) };
    },
    async events(target, limit) {
      const rows = await query<EventRow>(
        `SELECT target, at, kind, message, detail FROM ${s}.monitor_events WHERE target = $1 ORDER BY at DESC, id DESC LIMIT $2`,
        [target, limit],
      );
      return rows.map(rowToEvent);
    },
    async prune(beforeMs) {
      await query(`DELETE FROM ${s}.monitor_results WHERE at < $1`, [beforeMs]);
      await query(`DELETE FROM ${s}.monitor_events WHERE at < $1`, [beforeMs]);
    },
    async close() {
      await pool.end();
    },
  };
}
