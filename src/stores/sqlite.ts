import type Database from "better-sqlite3";
import { McpGateError } from "../core/errors.js";
import { KEY_COLUMNS, type KeyRow, recordToValues, rowToRecord } from "./key-rows.js";
import type { KeyRecord, KeyStore, RevokeResult, RotateResult } from "./key-store.js";
import { openSqlite } from "./sqlite-common.js";

/**
 * SQLite key store (better-sqlite3): the embedded default (`sqlite:./mcpgate.db`). WAL journal so
 * readers never block the writer, `busy_timeout` so concurrent writers from several processes (two
 * `mcpgate keys create` at once, or the CLI beside a running gateway) wait instead of failing, and
 * versioned migrations tracked in `PRAGMA user_version`.
 */

export interface SqliteKeyStoreOptions {
  /** Database file path; the file is created on first use (its directory must exist). */
  path: string;
  /** How long a writer waits for a lock held by another process. Default 5000. */
  busyTimeoutMs?: number;
  /** Page cache per connection, in KiB. Default 65536 (64 MiB; SQLite's own default is 2 MiB). */
  cacheSizeKib?: number;
  /** Memory-mapped I/O window, in bytes. Default 268435456 (256 MiB); 0 turns it off. */
  mmapSizeBytes?: number;
}

// Each entry moves the schema from version i to i+1. Never edit a shipped entry; append.
const MIGRATIONS: string[] = [
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY NOT NULL,
     hash TEXT NOT NULL,
     name TEXT NOT NULL,
     tenant TEXT,
     scopes TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER,
     revoked_at INTEGER,
     last_used_at INTEGER,
     probe INTEGER NOT NULL DEFAULT 0,
     replaces TEXT,
     replaced_by TEXT,
     grace_until INTEGER,
     rate_limit TEXT
   ) WITHOUT ROWID;
   CREATE INDEX api_keys_tenant ON api_keys (tenant);`,
];

function unavailable(err: unknown): McpGateError {
  const code = (err as { code?: string })?.code ?? "error";
  const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
  return new McpGateError("ERR_STORE_UNAVAILABLE", `sqlite key store: ${code}: ${msg}`, { cause: err });
}

function isDuplicate(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "SQLITE_CONSTRAINT_UNIQUE";
}

/**
 * Create a SQLite key store. Nothing touches the disk until `init()`.
 *
 * @example
 * const store = createSqliteKeyStore({ path: "./mcpgate.db" });
 * await store.init();
 */
export function createSqliteKeyStore(options: SqliteKeyStoreOptions): KeyStore {
  if (typeof options?.path !== "string" || options.path === "") {
    throw new McpGateError("ERR_INVALID_OPTION", "sqlite key store: path must be a non-empty string");
  }
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  const cacheSizeKib = Math.floor(options.cacheSizeKib ?? 65_536);
  const mmapSizeBytes = Math.floor(options.mmapSizeBytes ?? 268_435_456);
  let db: Database.Database | undefined;
  let stmts: ReturnType<typeof prepare> | undefined;

  function prepare(d: Database.Database) {
    const placeholders = KEY_COLUMNS.map(() => "?").join(", ");
    return {
      insert: d.prepare(`INSERT INTO api_keys (${KEY_COLUMNS.join(", ")}) VALUES (${placeholders})`),
      get: d.prepare("SELECT * FROM api_keys WHERE id = ?"),
      listAll: d.prepare("SELECT * FROM api_keys ORDER BY created_at, id"),
      listTenant: d.prepare("SELECT * FROM api_keys WHERE tenant = ? ORDER BY created_at, id"),
      revoke: d.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"),
      rotateOld: d.prepare("UPDATE api_keys SET replaced_by = ?, grace_until = ? WHERE id = ?"),
      touch: d.prepare(
        "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
      ),
    };
  }

  function ready() {
    if (!db || !stmts)
      throw new McpGateError("ERR_STORE_UNAVAILABLE", "sqlite key store: not initialised (call init())");
    return { db, s: stmts };
  }

  function migrate(d: Database.Database) {
    // BEGIN IMMEDIATE takes the write lock before reading user_version, so two processes starting
    // on a fresh file cannot both apply migration 1.
    d.transaction(() => {
      const version = d.pragma("user_version", { simple: true }) as number;
      for (let v = version; v < MIGRATIONS.length; v++) d.exec(MIGRATIONS[v]!);
      if (version < MIGRATIONS.length) d.pragma(`user_version = ${MIGRATIONS.length}`);
    }).immediate();
  }

  function run<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof McpGateError) throw err;
      throw unavailable(err);
    }
  }

  return {
    kind: "sqlite",
    async init() {
      if (db) return;
      run(() => {
        db = openSqlite(options.path, busyTimeoutMs, (d) => {
          d.pragma("synchronous = NORMAL");
          // Lookups by id stay flat from 1k to 1M keys only if the B-tree pages they touch are not
          // re-read through syscalls: a larger page cache plus mmap keep a 1M-key table in memory.
          d.pragma(`cache_size = -${cacheSizeKib}`);
          d.pragma(`mmap_size = ${mmapSizeBytes}`);
          migrate(d);
          stmts = prepare(d);
        });
      });
    },
    async close() {
      const d = db;
      db = undefined;
      stmts = undefined;
      d?.close();
    },
    async create(record: KeyRecord) {
      const { s } = ready();
      try {
        s.insert.run(...recordToValues(record, false));
      } catch (err) {
        if (isDuplicate(err))
          throw new McpGateError("ERR_INVALID_OPTION", `key id ${record.id} already exists`);
        throw unavailable(err);
      }
    },
    async get(id) {
      const { s } = ready();
      const row = run(() => s.get.get(id) as KeyRow | undefined);
      return row ? rowToRecord(row) : undefined;
    },
    async list(filter) {
      const { s } = ready();
      const rows = run(
        () => (filter?.tenant === undefined ? s.listAll.all() : s.listTenant.all(filter.tenant)) as KeyRow[],
      );
      return rows.map(rowToRecord);
    },
    async revoke(id, at = Date.now()): Promise<RevokeResult> {
      const { db: d, s } = ready();
      return run(() =>
        d
          .transaction((): RevokeResult => {
            const changed = s.revoke.run(at, id).changes;
            const row = s.get.get(id) as KeyRow | undefined;
            if (!row) return { ok: false, reason: "not_found" };
            return { ok: true, record: rowToRecord(row), alreadyRevoked: changed === 0 };
          })
          .immediate(),
      );
    },
    async rotate(oldId, next, graceUntil): Promise<RotateResult> {
      const { db: d, s } = ready();
      try {
        return d
          .transaction((): RotateResult => {
            const row = s.get.get(oldId) as KeyRow | undefined;
            if (!row) return { ok: false, reason: "not_found" };
            if (row.revoked_at !== null) return { ok: false, reason: "revoked" };
            if (row.replaced_by !== null) return { ok: false, reason: "already_rotated" };
            s.insert.run(...recordToValues({ ...next, replaces: oldId }, false));
            s.rotateOld.run(next.id, graceUntil, oldId);
            return { ok: true, old: rowToRecord(s.get.get(oldId) as KeyRow) };
          })
          .immediate();
      } catch (err) {
        if (isDuplicate(err))
          throw new McpGateError("ERR_INVALID_OPTION", `key id ${next.id} already exists`);
        throw unavailable(err);
      }
    },
    async touch(entries) {
      if (entries.length === 0) return;
      const { db: d, s } = ready();
      run(() =>
        d.transaction(() => {
          for (const { id, at } of entries) s.touch.run(at, id, at);
        })(),
      );
    },
  };
}
