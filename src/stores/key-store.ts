/**
 * The API-key store contract (DESIGN.md §5). Implementations: memory (`memory-keys.ts`), SQLite
 * (`sqlite.ts`) and PostgreSQL (`postgres.ts`); one shared test suite holds them to the same
 * behaviour. A store holds records, never a key: `hash` is the digest of the secret part.
 *
 * Infrastructure failures throw `McpGateError("ERR_STORE_UNAVAILABLE")`; expected outcomes (no
 * such id, already revoked) are return values.
 */

/** All times are epoch milliseconds. */
export interface KeyRecord {
  /** 8 base62 characters; the lookup key. */
  id: string;
  /** Lowercase hex SHA-256 / HMAC-SHA256 of the secret part. */
  hash: string;
  name: string;
  tenant?: string;
  scopes: string[];
  createdAt: number;
  expiresAt?: number;
  revokedAt?: number;
  lastUsedAt?: number;
  /** A read-only monitoring credential (authz/probe.ts). */
  probe: boolean;
  /** Set on a key issued by rotation: the id it replaces. */
  replaces?: string;
  /** Set on a rotated-out key: the id of its successor. */
  replacedBy?: string;
  /** A rotated-out key stays valid until this instant. */
  graceUntil?: number;
  /** Per-key overrides of the rate limit. */
  rateLimit?: { perMinute?: number };
}

export type RotateResult =
  | { ok: true; old: KeyRecord }
  | { ok: false; reason: "not_found" | "revoked" | "already_rotated" };

export type RevokeResult =
  | { ok: true; record: KeyRecord; alreadyRevoked: boolean }
  | { ok: false; reason: "not_found" };

/**
 * A key store. `init()` creates/migrates the schema (idempotent, safe to run from several processes
 * at once); no async work happens in constructors.
 *
 * @example
 * const store = createMemoryKeyStore();
 * await store.init();
 * await store.create(record);
 * const rec = await store.get(record.id);
 */
export interface KeyStore {
  readonly kind: "memory" | "sqlite" | "postgres";
  init(): Promise<void>;
  close(): Promise<void>;
  /** Insert a new record; a duplicate id throws `ERR_INVALID_OPTION` (ids are random, so this is a bug or a collision to retry). */
  create(record: KeyRecord): Promise<void>;
  get(id: string): Promise<KeyRecord | undefined>;
  /** Every record, oldest first; optionally one tenant's. */
  list(filter?: { tenant?: string }): Promise<KeyRecord[]>;
  /** Mark revoked at `at` (default now). Revoking twice keeps the first instant. */
  revoke(id: string, at?: number): Promise<RevokeResult>;
  /**
   * Atomically insert `next` (whose `replaces` is set to `oldId`) and mark the old record
   * `replacedBy = next.id`, `graceUntil`. Refused for an unknown, revoked or already-rotated key.
   */
  rotate(oldId: string, next: KeyRecord, graceUntil: number): Promise<RotateResult>;
  /** Batch update of last-used instants; a later instant wins, unknown ids are ignored. */
  touch(entries: ReadonlyArray<{ id: string; at: number }>): Promise<void>;
}

export type KeyStatus = "active" | "grace" | "rotated" | "revoked" | "expired";

/**
 * The lifecycle status of a record at `now` (the same rules the verifier applies).
 *
 * @example keyStatus(record, Date.now()) // "active"
 */
export function keyStatus(record: KeyRecord, now: number): KeyStatus {
  if (record.revokedAt !== undefined && now >= record.revokedAt) return "revoked";
  if (record.expiresAt !== undefined && now >= record.expiresAt) return "expired";
  if (record.replacedBy !== undefined) {
    return record.graceUntil !== undefined && now < record.graceUntil ? "grace" : "rotated";
  }
  return "active";
}

/**
 * A deep copy, so callers never share mutable state with a store or cache.
 *
 * @example const mine = copyKeyRecord(await store.get(id));
 */
export function copyKeyRecord(record: KeyRecord): KeyRecord {
  const copy: KeyRecord = { ...record, scopes: [...record.scopes] };
  if (record.rateLimit) copy.rateLimit = { ...record.rateLimit };
  return copy;
}
