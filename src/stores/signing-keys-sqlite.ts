import type Database from "better-sqlite3";
import { McpGateError } from "../core/errors.js";
import {
  type SigningAlg,
  type SigningKeyChange,
  type SigningKeyRow,
  type SigningKeyStore,
  signingKeyStoreOver,
  signingStoreUnavailable,
} from "./signing-keys.js";
import { openSqlite } from "./sqlite-common.js";

/**
 * SQLite signing-key store: the `signing_keys` table in the same file as the API keys
 * (`sqlite:./mcpgate.db`), so gateways sharing the file share the keys. Changes run under
 * `BEGIN IMMEDIATE`, so two processes creating the first key at once agree on one.
 */

/** Options of `createSqliteSigningKeyStore`. */
export interface SqliteSigningKeyStoreOptions {
  /** Database file path (created on first use; its directory must exist). */
  path: string;
  /** Algorithm of the first key and of rotations without `alg`. Default ES256. */
  alg?: SigningAlg;
  /** How long a writer waits for another process's lock. Default 5000. */
  busyTimeoutMs?: number;
  /** Clock, for tests. */
  now?: () => number;
  /** Seal private keys at rest with this secret (stores/signing-key-seal.ts; `MCPGATE_SIGNING_KEY_SECRET`). */
  secret?: string;
}

// Its own table, created if absent: independent of the API-key table's migrations (user_version).
const SCHEMA = `CREATE TABLE IF NOT EXISTS signing_keys (
  kid TEXT PRIMARY KEY NOT NULL,
  alg TEXT NOT NULL,
  private_jwk TEXT NOT NULL,
  public_jwk TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  activates_at INTEGER NOT NULL,
  retires_at INTEGER
) WITHOUT ROWID`;

const unavailable = (err: unknown) => signingStoreUnavailable("sqlite", err);

/**
 * Create a SQLite signing-key store. Nothing touches the disk until `init()`.
 *
 * @example
 * const keys = createSqliteSigningKeyStore({ path: "./mcpgate.db" });
 * await keys.init();
 */
export function createSqliteSigningKeyStore(options: SqliteSigningKeyStoreOptions): SigningKeyStore {
  if (typeof options?.path !== "string" || options.path === "")
    throw new McpGateError("ERR_INVALID_OPTION", "sqlite signing-key store: path must be a non-empty string");
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  let db: Database.Database | undefined;

  const ready = () => {
    if (!db)
      throw new McpGateError(
        "ERR_STORE_UNAVAILABLE",
        "sqlite signing-key store: not initialised (call init())",
      );
    return db;
  };

  function apply(d: Database.Database, change: SigningKeyChange): void {
    const del = d.prepare("DELETE FROM signing_keys WHERE kid = ?");
    const retire = d.prepare("UPDATE signing_keys SET retires_at = ? WHERE kid = ?");
    const insert = d.prepare(
      `INSERT INTO signing_keys (kid, alg, private_jwk, public_jwk, created_at, activates_at, retires_at)
       VALUES (@kid, @alg, @private_jwk, @public_jwk, @created_at, @activates_at, @retires_at)`,
    );
    for (const kid of change.remove ?? []) del.run(kid);
    for (const { kid, at } of change.retire ?? []) retire.run(at, kid);
    for (const row of change.insert ?? []) insert.run(row);
  }

  return signingKeyStoreOver(
    {
      kind: "sqlite",
      async init() {
        if (db) return;
        try {
          db = openSqlite(options.path, busyTimeoutMs, (d) => d.exec(SCHEMA));
        } catch (err) {
          throw unavailable(err);
        }
      },
      async close() {
        const d = db;
        db = undefined;
        d?.close();
      },
      async rows() {
        const d = ready();
        try {
          return d.prepare("SELECT * FROM signing_keys").all() as SigningKeyRow[];
        } catch (err) {
          throw unavailable(err);
        }
      },
      async mutate(fn) {
        const d = ready();
        try {
          return d
            .transaction(() => {
              const { change, result } = fn(d.prepare("SELECT * FROM signing_keys").all() as SigningKeyRow[]);
              apply(d, change);
              return result;
            })
            .immediate();
        } catch (err) {
          throw unavailable(err);
        }
      },
    },
    {
      ...(options.alg ? { alg: options.alg } : {}),
      ...(options.now ? { now: options.now } : {}),
      ...(options.secret ? { secret: options.secret } : {}),
    },
  );
}
