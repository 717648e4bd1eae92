import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type Database from "better-sqlite3";
import { McpGateError } from "../core/errors.js";
import {
  type EventRow,
  type HistoryStore,
  RESULT_COLUMNS,
  type ResultRow,
  recordValues,
  rowToEvent,
  rowToRecord,
} from "./probe-history.js";
import { openSqlite } from "./sqlite-common.js";

/**
 * Probe history in a SQLite file of its own (not the key store's): the monitor writes often and
 * usually runs somewhere else. WAL so the status page reads while a probe result is written.
 *
 * @example
 * const history = createSqliteHistory({ path: "./mcpgate-monitor.db" });
 * await history.init();
 */
export function createSqliteHistory(options: { path: string }): HistoryStore {
  if (!options?.path) throw new TypeError("createSqliteHistory: path is required");
  let db: Database.Database | undefined;
  const open = (): Database.Database => {
    if (!db) throw new McpGateError("ERR_STORE_UNAVAILABLE", "sqlite history: call init() first");
    return db;
  };
  const guard = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof McpGateError) throw err;
      const code = (err as { code?: string }).code ?? "error";
      throw new McpGateError("ERR_STORE_UNAVAILABLE", `sqlite history: ${code}`, { cause: err });
    }
  };
  return {
    async init() {
      if (db) return;
      guard(() => {
        if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true });
        db = openSqlite(options.path, 5000, (d) =>
          d.exec(`CREATE TABLE IF NOT EXISTS monitor_results (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            target TEXT NOT NULL, at INTEGER NOT NULL, status TEXT NOT NULL, http_status INTEGER NOT NULL,
            latency_ms REAL NOT NULL, tools INTEGER, schema_hash TEXT, challenge TEXT NOT NULL,
            error TEXT, steps TEXT NOT NULL);
          CREATE INDEX IF NOT EXISTS monitor_results_target_at ON monitor_results (target, at);
          CREATE TABLE IF NOT EXISTS monitor_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            target TEXT NOT NULL, at INTEGER NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL, detail TEXT NOT NULL);
          CREATE INDEX IF NOT EXISTS monitor_events_target_at ON monitor_events (target, at);`),
        );
      });
    },
    async record(r) {
      guard(() =>
        open()
          .prepare(`INSERT INTO monitor_results (${RESULT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(...recordValues(r)),
      );
    },
    async recordEvent(e) {
      guard(() =>
        open()
          .prepare("INSERT INTO monitor_events (target, at, kind, message, detail) VALUES (?, ?, ?, ?, ?)")
          .run(e.target, e.at, e.kind, e.message, JSON.stringify(e.detail)),
      );
    },
    async results(target, sinceMs, limit = 10_000) {
      const rows = guard(
        () =>
          open()
            .prepare(
              `SELECT ${RESULT_COLUMNS} FROM monitor_results WHERE target = ? AND at >= ? ORDER BY at DESC, id DESC LIMIT ?`,
            )
            .all(target, sinceMs, limit) as ResultRow[],
      );
      return rows.reverse().map(rowToRecord);
    },
    async last(target) {
      const row = guard(
        () =>
          open()
            .prepare(
              `SELECT ${RESULT_COLUMNS} FROM monitor_results WHERE target = ? ORDER BY at DESC, id DESC LIMIT 1`,
            )
            .get(target) as ResultRow | undefined,
      );
      return row ? rowToRecord(row) : undefined;
    },
    async uptime(target, sinceMs) {
      const row = guard(
        () =>
          open()
            .prepare(
              "SELECT COUNT(*) AS checks, COALESCE(SUM(status = 'up'), 0) AS up FROM monitor_results WHERE target = ? AND at >= ?",
            )
            .get(target, sinceMs) as { checks: number; up: number },
      );
      return { checks: Number(row.checks), up: Number(row.up) };
    },
    async events(target, limit) {
      const rows = guard(
        () =>
          open()
            .prepare(
              "SELECT target, at, kind, message, detail FROM monitor_events WHERE target = ? ORDER BY at DESC, id DESC LIMIT ?",
            )
            .all(target, limit) as EventRow[],
      );
      return rows.map(rowToEvent);
    },
    async prune(beforeMs) {
      guard(() => {
        open().prepare("DELETE FROM monitor_results WHERE at < ?").run(beforeMs);
        open().prepare("DELETE FROM monitor_events WHERE at < ?").run(beforeMs);
      });
    },
    async close() {
      db?.close();
      db = undefined;
    },
  };
}
