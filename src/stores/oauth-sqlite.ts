import type Database from "better-sqlite3";
import { McpGateError } from "../core/errors.js";
import {
  expiryOf,
  type OAuthPayload,
  type OAuthRecordStore,
  oauthStoreUnavailable,
  serializeOAuthPayload,
} from "./oauth-records.js";
import { openSqlite } from "./sqlite-common.js";

/** Options of {@link createSqliteOAuthStore}. */
export interface SqliteOAuthStoreOptions {
  /** Database file (usually the key store's own file). Created on first use. */
  path: string;
  /** How long a writer waits for a lock held by another process. Default 5000. */
  busyTimeoutMs?: number;
}

// Idempotent DDL, not PRAGMA user_version: that counter belongs to the key store sharing this file.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS oauth_records (
  model TEXT NOT NULL,
  id TEXT NOT NULL,
  payload TEXT NOT NULL,
  uid TEXT,
  grant_id TEXT,
  expires_at INTEGER,
  PRIMARY KEY (model, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS oauth_records_uid ON oauth_records (model, uid);
CREATE INDEX IF NOT EXISTS oauth_records_grant ON oauth_records (grant_id);
CREATE INDEX IF NOT EXISTS oauth_records_expiry ON oauth_records (expires_at);`;

/** model, id, payload, uid, grant_id, expires_at: the columns of one record, in order. */
type RecordRow = [string, string, string, string | null, string | null, number | null];

/**
 * The authorization server's records in SQLite (better-sqlite3), beside the API keys in the key
 * store's file (DESIGN.md §9 `authServer.store`). Expired rows are ignored on read and swept on write.
 *
 * @example
 * const store = createSqliteOAuthStore({ path: "./mcpgate.db" });
 * await store.init();
 */
export function createSqliteOAuthStore(options: SqliteOAuthStoreOptions): OAuthRecordStore {
  if (typeof options?.path !== "string" || options.path === "") {
    throw new McpGateError("ERR_INVALID_OPTION", "sqlite oauth store: path must be a non-empty string");
  }
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  let db: Database.Database | undefined;
  let s: ReturnType<typeof prepare> | undefined;
  let writes = 0;

  function prepare(d: Database.Database) {
    const alive = "(expires_at IS NULL OR expires_at > ?)";
    return {
      upsert: d.prepare(
        `INSERT INTO oauth_records (model, id, payload, uid, grant_id, expires_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, uid = excluded.uid,
           grant_id = excluded.grant_id, expires_at = excluded.expires_at`,
      ),
      insertIfAbsent: insertIfAbsent(d),
      find: d.prepare(`SELECT payload FROM oauth_records WHERE model = ? AND id = ? AND ${alive}`),
      findByUid: d.prepare(
        `SELECT payload FROM oauth_records WHERE model = ? AND uid = ? AND ${alive} LIMIT 1`,
      ),
      consume: d.prepare(
        `UPDATE oauth_records SET payload = json_set(payload, '$.consumed', ?) WHERE model = ? AND id = ?`,
      ),
      destroy: d.prepare("DELETE FROM oauth_records WHERE model = ? AND id = ?"),
      revoke: d.prepare("DELETE FROM oauth_records WHERE grant_id = ?"),
      count: d.prepare(`SELECT COUNT(*) AS n FROM oauth_records WHERE model = ? AND ${alive}`),
      sweep: d.prepare("DELETE FROM oauth_records WHERE expires_at IS NOT NULL AND expires_at <= ?"),
      extend: d.prepare(`UPDATE oauth_records SET expires_at = ? WHERE model = ? AND id = ? AND ${alive}`),
      expireUnbounded: d.prepare(
        "UPDATE oauth_records SET expires_at = ? WHERE model = ? AND expires_at IS NULL",
      ),
    };
  }

  // Insert (replacing only an expired row), then read back what is stored, in one write transaction:
  // another process's insert lands wholly before or after ours.
  function insertIfAbsent(d: Database.Database) {
    const insert = d.prepare(
      `INSERT INTO oauth_records (model, id, payload, uid, grant_id, expires_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, uid = excluded.uid,
         grant_id = excluded.grant_id, expires_at = excluded.expires_at
       WHERE oauth_records.expires_at IS NOT NULL AND oauth_records.expires_at <= ?`,
    );
    const stored = d.prepare("SELECT payload FROM oauth_records WHERE model = ? AND id = ?");
    return d.transaction((row: RecordRow) => {
      insert.run(...row, Date.now());
      return stored.get(row[0], row[1]) as { payload: string };
    });
  }

  function ready() {
    if (!s)
      throw new McpGateError("ERR_STORE_UNAVAILABLE", "sqlite oauth store: not initialised (call init())");
    return s;
  }

  function run<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw oauthStoreUnavailable("sqlite", err);
    }
  }

  const parse = (row: { payload: string } | undefined): OAuthPayload | undefined =>
    row ? (JSON.parse(row.payload) as OAuthPayload) : undefined;

  return {
    kind: "sqlite",
    async init() {
      if (db) return;
      run(() => {
        db = openSqlite(options.path, busyTimeoutMs, (d) => {
          d.exec(SCHEMA);
          s = prepare(d);
        });
      });
    },
    async close() {
      const d = db;
      db = undefined;
      s = undefined;
      d?.close();
    },
    async upsert(model, id, payload, expiresInSec) {
      const st = ready();
      const text = serializeOAuthPayload(payload);
      run(() => {
        // Sweep expired rows now and then, so codes and interactions do not pile up.
        if (++writes % 256 === 0) st.sweep.run(Date.now());
        st.upsert.run(model, id, text, payload.uid ?? null, payload.grantId ?? null, expiryOf(expiresInSec));
      });
    },
    async insertIfAbsent(model, id, payload, expiresInSec) {
      const st = ready();
      const text = serializeOAuthPayload(payload);
      const row: RecordRow = [
        model,
        id,
        text,
        payload.uid ?? null,
        payload.grantId ?? null,
        expiryOf(expiresInSec),
      ];
      return parse(run(() => st.insertIfAbsent.immediate(row)))!;
    },
    async find(model, id) {
      const st = ready();
      return parse(run(() => st.find.get(model, id, Date.now()) as { payload: string } | undefined));
    },
    async findByUid(model, uid) {
      const st = ready();
      return parse(run(() => st.findByUid.get(model, uid, Date.now()) as { payload: string } | undefined));
    },
    async consume(model, id) {
      const st = ready();
      run(() => st.consume.run(Math.floor(Date.now() / 1000), model, id));
    },
    async destroy(model, id) {
      const st = ready();
      run(() => st.destroy.run(model, id));
    },
    async revokeByGrantId(grantId) {
      const st = ready();
      run(() => st.revoke.run(grantId));
    },
    async count(model) {
      const st = ready();
      return run(() => (st.count.get(model, Date.now()) as { n: number }).n);
    },
    async extend(model, id, expiresInSec) {
      const st = ready();
      const now = Date.now();
      return run(() => st.extend.run(expiryOf(expiresInSec, now), model, id, now).changes > 0);
    },
    async expireUnbounded(model, expiresInSec) {
      const st = ready();
      return run(() => st.expireUnbounded.run(expiryOf(expiresInSec), model).changes);
    },
  };
}
