import { McpGateError } from "../core/errors.js";
import { parseKeyStoreLocation } from "./open-key-store.js";

/**
 * State of the gateway's own authorization server (DESIGN.md §9 `authServer.store`): registered
 * clients, grants, refresh tokens, sessions, interactions and authorization codes, as the records
 * `oidc-provider` keeps. One shape for every backend: a record is a JSON payload under
 * (model, id), with an optional expiry, the `uid` index interactions/sessions are found by, and the
 * `grantId` every token of one grant shares (so a grant — a refresh-token family — is revoked at once).
 *
 * Backends: memory (tests, one process), SQLite and PostgreSQL (the key store's database), Redis
 * (short-lived records when `state.redis` is set, so several instances share codes and sessions).
 * Infrastructure failures throw `ERR_STORE_UNAVAILABLE`; a missing or expired record is `undefined`.
 */
export interface OAuthRecordStore {
  readonly kind: "memory" | "sqlite" | "postgres" | "redis";
  init(): Promise<void>;
  close(): Promise<void>;
  /** Insert or replace a record; `expiresInSec` absent means no expiry. */
  upsert(model: string, id: string, payload: OAuthPayload, expiresInSec?: number): Promise<void>;
  /**
   * Insert a record unless a live one is stored under (model, id), atomically for every instance on
   * the backend; returns the record stored after the call: this one, or the one that was there.
   */
  insertIfAbsent(
    model: string,
    id: string,
    payload: OAuthPayload,
    expiresInSec?: number,
  ): Promise<OAuthPayload>;
  /** The record, or undefined when absent or expired. */
  find(model: string, id: string): Promise<OAuthPayload | undefined>;
  findByUid(model: string, uid: string): Promise<OAuthPayload | undefined>;
  /** Mark a record consumed (`payload.consumed` = epoch seconds); oidc-provider detects reuse by it. */
  consume(model: string, id: string): Promise<void>;
  destroy(model: string, id: string): Promise<void>;
  /** Delete every record of one grant, of every model (refresh-token reuse, revocation, logout). */
  revokeByGrantId(grantId: string): Promise<void>;
  /** Live records of a model (bounds dynamic registration). */
  count(model: string): Promise<number>;
  /**
   * Give a live record a new expiry, `expiresInSec` from now (a registered client kept while it is
   * used); its payload is left as it is. False when no live record is stored under (model, id).
   */
  extend(model: string, id: string, expiresInSec: number): Promise<boolean>;
  /**
   * Give every record of a model that has no expiry one, `expiresInSec` from now (records written
   * before the model had an expiry, at an upgrade); returns how many.
   */
  expireUnbounded(model: string, expiresInSec: number): Promise<number>;
}

/** An oidc-provider record: a JSON object; `uid`, `grantId` and `consumed` are read by the stores. */
export type OAuthPayload = Record<string, unknown> & { uid?: string; grantId?: string; consumed?: number };

/** Most bytes of one serialized record: a larger one is a bug or an attack, and is refused. */
export const MAX_OAUTH_RECORD_BYTES = 64 * 1024;

/**
 * Serialize a payload for storage, refusing oversized records.
 *
 * @example const text = serializeOAuthPayload({ uid: "x" });
 */
export function serializeOAuthPayload(payload: OAuthPayload): string {
  const text = JSON.stringify(payload);
  if (text.length > MAX_OAUTH_RECORD_BYTES) {
    throw new McpGateError("ERR_INVALID_OPTION", "oauth record too large");
  }
  return text;
}

/** Epoch milliseconds at which a record expires, or null. */
export function expiryOf(expiresInSec: number | undefined, nowMs = Date.now()): number | null {
  return expiresInSec === undefined || !Number.isFinite(expiresInSec) ? null : nowMs + expiresInSec * 1000;
}

/** Wrap a driver error as ERR_STORE_UNAVAILABLE (first line only: no connection string). */
export function oauthStoreUnavailable(kind: string, err: unknown): McpGateError {
  if (err instanceof McpGateError) return err;
  const code = (err as { code?: string })?.code ?? "error";
  const msg = err instanceof Error ? (err.message.split("\n")[0] ?? "") : String(err);
  return new McpGateError("ERR_STORE_UNAVAILABLE", `${kind} oauth store: ${code}: ${msg}`, { cause: err });
}

interface MemoryRecord {
  payload: OAuthPayload;
  expiresAt: number | null;
}

/**
 * An in-process store (one instance; tests and `memory:`), bounded by expiry sweeps.
 *
 * @example const store = createMemoryOAuthStore(); await store.init();
 */
export function createMemoryOAuthStore(options: { now?: () => number } = {}): OAuthRecordStore {
  const now = options.now ?? Date.now;
  const records = new Map<string, MemoryRecord>();
  const key = (model: string, id: string) => `${model}\u0000${id}`;
  const live = (r: MemoryRecord | undefined) =>
    r && (r.expiresAt === null || r.expiresAt > now()) ? r : undefined;
  const sweep = () => {
    const t = now();
    for (const [k, r] of records) if (r.expiresAt !== null && r.expiresAt <= t) records.delete(k);
  };
  const put = (model: string, id: string, payload: OAuthPayload, expiresInSec: number | undefined) => {
    if (records.size > 0 && records.size % 1024 === 0) sweep();
    serializeOAuthPayload(payload);
    const stored = structuredClone(payload);
    records.set(key(model, id), { payload: stored, expiresAt: expiryOf(expiresInSec, now()) });
    return stored;
  };
  return {
    kind: "memory",
    async init() {},
    async close() {
      records.clear();
    },
    async upsert(model, id, payload, expiresInSec) {
      put(model, id, payload, expiresInSec);
    },
    async insertIfAbsent(model, id, payload, expiresInSec) {
      // No await between the check and the write: one process, so this is atomic.
      const found = live(records.get(key(model, id)));
      return structuredClone(found ? found.payload : put(model, id, payload, expiresInSec));
    },
    async find(model, id) {
      const r = live(records.get(key(model, id)));
      return r ? structuredClone(r.payload) : undefined;
    },
    async findByUid(model, uid) {
      for (const [k, r] of records) {
        if (k.startsWith(`${model}\u0000`) && r.payload.uid === uid && live(r))
          return structuredClone(r.payload);
      }
      return undefined;
    },
    async consume(model, id) {
      const r = live(records.get(key(model, id)));
      if (r) r.payload.consumed = Math.floor(now() / 1000);
    },
    async destroy(model, id) {
      records.delete(key(model, id));
    },
    async revokeByGrantId(grantId) {
      for (const [k, r] of records) if (r.payload.grantId === grantId) records.delete(k);
    },
    async count(model) {
      let n = 0;
      for (const [k, r] of records) if (k.startsWith(`${model}\u0000`) && live(r)) n++;
      return n;
    },
    async extend(model, id, expiresInSec) {
      const r = live(records.get(key(model, id)));
      if (r) r.expiresAt = expiryOf(expiresInSec, now());
      return r !== undefined;
    },
    async expireUnbounded(model, expiresInSec) {
      let n = 0;
      for (const [k, r] of records) {
        if (!k.startsWith(`${model}\u0000`) || r.expiresAt !== null) continue;
        r.expiresAt = expiryOf(expiresInSec, now());
        n++;
      }
      return n;
    },
  };
}

/**
 * Open (and `init()`) the durable authorization-server store a location names: `sqlite:PATH`,
 * `postgres://…[?schema=NAME]` or `memory:` — the same strings as the key store. The driver is
 * loaded only for the scheme used.
 *
 * @example const store = await openOAuthStore("sqlite:./mcpgate.db");
 */
export async function openOAuthStore(location: string): Promise<OAuthRecordStore> {
  const loc = parseKeyStoreLocation(location);
  let store: OAuthRecordStore;
  if (loc.kind === "memory") {
    store = createMemoryOAuthStore();
  } else if (loc.kind === "sqlite") {
    const { createSqliteOAuthStore } = await import("./oauth-sqlite.js");
    store = createSqliteOAuthStore({ path: loc.path });
  } else {
    const { createPostgresOAuthStore } = await import("./oauth-postgres.js");
    store = createPostgresOAuthStore({
      connectionString: loc.connectionString,
      ...(loc.schema !== undefined ? { schema: loc.schema } : {}),
    });
  }
  await store.init();
  return store;
}
