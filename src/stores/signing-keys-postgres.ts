import type pg from "pg";
import { McpGateError } from "../core/errors.js";
import { openPostgresPool, postgresSchema } from "./pg-common.js";
import {
  type SigningAlg,
  type SigningKeyChange,
  type SigningKeyRow,
  type SigningKeyStore,
  signingKeyStoreOver,
  signingStoreUnavailable,
} from "./signing-keys.js";

/**
 * PostgreSQL signing-key store: `<schema>.signing_keys` beside the API keys, for several gateway
 * instances that must sign with one key and publish one JWKS. Every change runs in a transaction
 * holding an advisory lock per schema, so instances starting or rotating together agree.
 */

/** Options of `createPostgresSigningKeyStore`. */
export interface PostgresSigningKeyStoreOptions {
  /** `postgres://user:pass@host:5432/db`. Ignored when `pool` is given. */
  connectionString?: string;
  /** An existing pool (not ended by `close()`). */
  pool?: pg.Pool;
  /** Schema holding the table. Default "mcpgate". Letters, digits and `_` only. */
  schema?: string;
  /** Algorithm of the first key and of rotations without `alg`. Default ES256. */
  alg?: SigningAlg;
  /** Pool size when the store creates the pool. Default 4. */
  max?: number;
  /** Clock, for tests. */
  now?: () => number;
  /** Seal private keys at rest with this secret (stores/signing-key-seal.ts; `MCPGATE_SIGNING_KEY_SECRET`). */
  secret?: string;
}

const unavailable = (err: unknown) => signingStoreUnavailable("postgres", err);

/**
 * Create a PostgreSQL signing-key store. Nothing connects until `init()`.
 *
 * @example
 * const keys = createPostgresSigningKeyStore({ connectionString: process.env.DATABASE_URL });
 * await keys.init();
 */
export function createPostgresSigningKeyStore(options: PostgresSigningKeyStoreOptions): SigningKeyStore {
  const schema = postgresSchema(options, "postgres signing-key store");
  const table = `"${schema}".signing_keys`;
  const lockName = `mcpgate-signing-keys:${schema}`;
  const ownsPool = !options.pool;
  let pool: pg.Pool | undefined = options.pool;

  const ready = () => {
    if (!pool)
      throw new McpGateError(
        "ERR_STORE_UNAVAILABLE",
        "postgres signing-key store: not initialised (call init())",
      );
    return pool;
  };

  async function locked<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await ready()
      .connect()
      .catch((err) => {
        throw unavailable(err);
      });
    try {
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [lockName]);
      const out = await fn(client);
      await client.query("COMMIT");
      return out;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw unavailable(err);
    } finally {
      client.release();
    }
  }

  async function apply(c: pg.PoolClient, change: SigningKeyChange): Promise<void> {
    if (change.remove?.length)
      await c.query(`DELETE FROM ${table} WHERE kid = ANY($1::text[])`, [change.remove]);
    for (const { kid, at } of change.retire ?? [])
      await c.query(`UPDATE ${table} SET retires_at = $1 WHERE kid = $2`, [at, kid]);
    for (const r of change.insert ?? [])
      await c.query(
        `INSERT INTO ${table} (kid, alg, private_jwk, public_jwk, created_at, activates_at, retires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [r.kid, r.alg, r.private_jwk, r.public_jwk, r.created_at, r.activates_at, r.retires_at],
      );
  }

  return signingKeyStoreOver(
    {
      kind: "postgres",
      async init() {
        if (!pool) {
          pool = openPostgresPool(options.connectionString!, options.max ?? 4);
        }
        try {
          await locked(async (c) => {
            await c.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
            await c.query(`CREATE TABLE IF NOT EXISTS ${table} (
              kid TEXT PRIMARY KEY,
              alg TEXT NOT NULL,
              private_jwk TEXT NOT NULL,
              public_jwk TEXT NOT NULL,
              created_at BIGINT NOT NULL,
              activates_at BIGINT NOT NULL,
              retires_at BIGINT
            )`);
          });
        } catch (err) {
          if (ownsPool) {
            const p0 = pool;
            pool = undefined;
            await p0?.end().catch(() => {});
          }
          throw unavailable(err);
        }
      },
      async close() {
        const p0 = pool;
        pool = undefined;
        if (ownsPool) await p0?.end();
      },
      async rows() {
        try {
          return (await ready().query<SigningKeyRow>(`SELECT * FROM ${table}`)).rows;
        } catch (err) {
          throw unavailable(err);
        }
      },
      async mutate(fn) {
        return locked(async (c) => {
          const { rows } = await c.query<SigningKeyRow>(`SELECT * FROM ${table}`);
          const { change, result } = fn(rows);
          await apply(c, change);
          return result;
        });
      },
    },
    {
      ...(options.alg ? { alg: options.alg } : {}),
      ...(options.now ? { now: options.now } : {}),
      ...(options.secret ? { secret: options.secret } : {}),
    },
  );
}
