import Database from "better-sqlite3";

/**
 * Open a SQLite file as every mcpgate store does: a busy timeout (other processes, `mcpgate keys`,
 * may hold the write lock), WAL journaling, then the store's own `setup` (pragmas, schema,
 * statements). A failed set-up closes the file again.
 *
 * @example const db = openSqlite(path, 5000, (d) => d.exec(SCHEMA));
 */
export function openSqlite(
  path: string,
  busyTimeoutMs: number,
  setup: (db: Database.Database) => void,
): Database.Database {
  const db = new Database(path, { timeout: busyTimeoutMs });
  try {
    db.pragma(`busy_timeout = ${Math.floor(busyTimeoutMs)}`);
    db.pragma("journal_mode = WAL");
    setup(db);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
