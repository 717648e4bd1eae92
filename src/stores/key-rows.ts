import type { KeyRecord } from "./key-store.js";

/**
 * The row shape shared by the SQL key stores (SQLite and PostgreSQL use the same column names).
 * Times are epoch milliseconds; `scopes` and `rate_limit` are JSON text so both engines store them
 * the same way. Internal to `stores/`.
 */
export interface KeyRow {
  id: string;
  hash: string;
  name: string;
  tenant: string | null;
  scopes: string;
  created_at: number | string;
  expires_at: number | string | null;
  revoked_at: number | string | null;
  last_used_at: number | string | null;
  probe: number | boolean;
  replaces: string | null;
  replaced_by: string | null;
  grace_until: number | string | null;
  rate_limit: string | null;
}

/** Column order used by INSERT statements. */
export const KEY_COLUMNS = [
  "id",
  "hash",
  "name",
  "tenant",
  "scopes",
  "created_at",
  "expires_at",
  "revoked_at",
  "last_used_at",
  "probe",
  "replaces",
  "replaced_by",
  "grace_until",
  "rate_limit",
] as const;

// pg returns BIGINT as a string (it may exceed 2^53); epoch milliseconds never do.
function num(v: number | string | null): number | undefined {
  return v === null || v === undefined ? undefined : Number(v);
}

/** Row → record, dropping NULL columns. */
export function rowToRecord(row: KeyRow): KeyRecord {
  const r: KeyRecord = {
    id: row.id,
    hash: row.hash,
    name: row.name,
    scopes: JSON.parse(row.scopes) as string[],
    createdAt: Number(row.created_at),
    probe: row.probe === true || row.probe === 1,
  };
  if (row.tenant !== null) r.tenant = row.tenant;
  const expiresAt = num(row.expires_at);
  if (expiresAt !== undefined) r.expiresAt = expiresAt;
  const revokedAt = num(row.revoked_at);
  if (revokedAt !== undefined) r.revokedAt = revokedAt;
  const lastUsedAt = num(row.last_used_at);
  if (lastUsedAt !== undefined) r.lastUsedAt = lastUsedAt;
  if (row.replaces !== null) r.replaces = row.replaces;
  if (row.replaced_by !== null) r.replacedBy = row.replaced_by;
  const graceUntil = num(row.grace_until);
  if (graceUntil !== undefined) r.graceUntil = graceUntil;
  if (row.rate_limit !== null) r.rateLimit = JSON.parse(row.rate_limit) as { perMinute?: number };
  return r;
}

/** Record → positional values in `KEY_COLUMNS` order (`probe` as 0/1 or boolean per engine). */
export function recordToValues(r: KeyRecord, probeAsBoolean: boolean): unknown[] {
  return [
    r.id,
    r.hash,
    r.name,
    r.tenant ?? null,
    JSON.stringify(r.scopes),
    r.createdAt,
    r.expiresAt ?? null,
    r.revokedAt ?? null,
    r.lastUsedAt ?? null,
    probeAsBoolean ? r.probe : r.probe ? 1 : 0,
    r.replaces ?? null,
    r.replacedBy ?? null,
    r.graceUntil ?? null,
    r.rateLimit ? JSON.stringify(r.rateLimit) : null,
  ];
}
