import { McpGateError } from "../core/errors.js";
import type { KeyStore } from "./key-store.js";
import { createMemoryKeyStore } from "./memory-keys.js";

/**
 * Where a key store lives, as written in config (`auth.apiKeys.store`), `--store` and `MCPGATE_STORE`:
 * `sqlite:PATH`, `postgres://…` / `postgresql://…` (optional `?schema=NAME`), or `memory:`.
 * The driver is imported only for the scheme used, so a SQLite deployment never loads `pg`.
 */
export type KeyStoreLocation =
  | { kind: "memory" }
  | { kind: "sqlite"; path: string }
  | { kind: "postgres"; connectionString: string; schema?: string };

/**
 * Parse a store location string. Throws `ERR_INVALID_OPTION` for an unknown scheme.
 *
 * @example parseKeyStoreLocation("sqlite:./mcpgate.db") // { kind: "sqlite", path: "./mcpgate.db" }
 */
export function parseKeyStoreLocation(location: string): KeyStoreLocation {
  if (location === "memory:" || location === "memory") return { kind: "memory" };
  if (location.startsWith("sqlite:")) {
    let path = location.slice("sqlite:".length);
    // Accept sqlite:///abs/path and sqlite://./rel as well as sqlite:PATH.
    if (path.startsWith("//")) path = path.slice(2);
    if (path === "")
      throw new McpGateError(
        "ERR_INVALID_OPTION",
        "key store: sqlite: needs a file path, e.g. sqlite:./mcpgate.db",
      );
    return { kind: "sqlite", path };
  }
  if (location.startsWith("postgres://") || location.startsWith("postgresql://")) {
    let url: URL;
    try {
      url = new URL(location);
    } catch {
      throw new McpGateError("ERR_INVALID_OPTION", "key store: invalid postgres URL");
    }
    const schema = url.searchParams.get("schema") ?? undefined;
    // `schema` is ours; pg would send unknown parameters to the server as startup options.
    url.searchParams.delete("schema");
    const out: KeyStoreLocation = { kind: "postgres", connectionString: url.toString() };
    if (schema !== undefined) out.schema = schema;
    return out;
  }
  throw new McpGateError(
    "ERR_INVALID_OPTION",
    "key store: unknown location; use sqlite:PATH, postgres://… or memory:",
  );
}

/**
 * Open (and `init()`) the key store a location string names. Store-specific failures surface as
 * `ERR_STORE_UNAVAILABLE`.
 *
 * @example
 * const store = await openKeyStore(process.env.MCPGATE_STORE ?? "sqlite:./mcpgate.db");
 * try { … } finally { await store.close(); }
 */
export async function openKeyStore(location: string): Promise<KeyStore> {
  const loc = parseKeyStoreLocation(location);
  let store: KeyStore;
  if (loc.kind === "memory") {
    store = createMemoryKeyStore();
  } else if (loc.kind === "sqlite") {
    const { createSqliteKeyStore } = await import("./sqlite.js");
    store = createSqliteKeyStore({ path: loc.path });
  } else {
    const { createPostgresKeyStore } = await import("./postgres.js");
    store = createPostgresKeyStore(
      loc.schema === undefined
        ? { connectionString: loc.connectionString }
        : { connectionString: loc.connectionString, schema: loc.schema },
    );
  }
  await store.init();
  return store;
}
