import pg from "pg";
import { McpGateError } from "../core/errors.js";

/** A PostgreSQL schema name mcpgate puts in DDL (quoted): at most 63 characters, no quoting needed. */
const SCHEMA_RE = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * The schema of a PostgreSQL store's options (default `mcpgate`), after checking that it is safe in
 * DDL and that the store has something to connect with. `what` names the store in the message.
 *
 * @example const schema = postgresSchema(options, "postgres key store");
 */
export function postgresSchema(
  options: { schema?: string; pool?: unknown; connectionString?: unknown } | undefined,
  what: string,
): string {
  const schema = options?.schema ?? "mcpgate";
  if (!SCHEMA_RE.test(schema))
    throw new McpGateError("ERR_INVALID_OPTION", `${what}: schema must match [A-Za-z_][A-Za-z0-9_]*`);
  if (!options?.pool && typeof options?.connectionString !== "string")
    throw new McpGateError("ERR_INVALID_OPTION", `${what}: connectionString or pool is required`);
  return schema;
}

/**
 * A pool for a store that owns its connections. An idle client's socket error must not crash the
 * process: it is swallowed here, and the next query reports the outage.
 *
 * @example pool = openPostgresPool(options.connectionString!, options.max ?? 4);
 */
export function openPostgresPool(connectionString: string, max: number, connectionTimeoutMs = 5000): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: connectionTimeoutMs });
  pool.on("error", () => {});
  return pool;
}
