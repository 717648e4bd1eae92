import { McpGateError } from "../core/errors.js";
import type { KeyRecord, KeyStore } from "../stores/key-store.js";
import { generateApiKey, hashSecret } from "./api-key.js";

/**
 * Key lifecycle on top of a `KeyStore`: issue, rotate, revoke. Used by the `mcpgate keys` CLI and
 * by library users who manage keys from their own admin code. Each function returns the full key
 * only at issue time; the store never sees it.
 */

export interface IssueKeyOptions {
  name: string;
  scopes?: string[];
  tenant?: string;
  /** Lifetime from now. Default: never expires. */
  expiresInMs?: number;
  probe?: boolean;
  rateLimit?: { perMinute?: number };
  pepper?: string;
  now?: number;
}

export interface IssuedKey {
  /** The full key: show it once, never store or log it. */
  key: string;
  record: KeyRecord;
}

// Ids are 8 random base62 chars (≈47.6 bits); a collision is astronomically rare but harmless to retry.
const MAX_ID_ATTEMPTS = 3;

/**
 * Create and store a new key.
 *
 * @example
 * const { key, record } = await issueApiKey(store, { name: "ci", scopes: ["tools:call"], expiresInMs: 90 * 86_400_000 });
 */
export async function issueApiKey(store: KeyStore, options: IssueKeyOptions): Promise<IssuedKey> {
  const now = options.now ?? Date.now();
  for (let attempt = 1; ; attempt++) {
    const generated = generateApiKey();
    const record: KeyRecord = {
      id: generated.id,
      hash: hashSecret(generated.secret, options.pepper),
      name: options.name,
      scopes: [...(options.scopes ?? [])],
      createdAt: now,
      probe: options.probe === true,
    };
    if (options.tenant !== undefined) record.tenant = options.tenant;
    if (options.expiresInMs !== undefined) record.expiresAt = now + options.expiresInMs;
    if (options.rateLimit) record.rateLimit = { ...options.rateLimit };
    try {
      await store.create(record);
      return { key: generated.key, record };
    } catch (err) {
      if (attempt < MAX_ID_ATTEMPTS && err instanceof McpGateError && err.code === "ERR_INVALID_OPTION")
        continue;
      throw err;
    }
  }
}

export type RotateKeyResult =
  | { ok: true; key: string; record: KeyRecord; old: KeyRecord; graceUntil: number }
  | { ok: false; reason: "not_found" | "revoked" | "already_rotated" | "expired" };

/**
 * Issue a successor for key `id` and keep the old key valid for `graceMs` (never past its own
 * expiry). The successor copies name, tenant, scopes, probe flag and rate limit; when the old key
 * had a lifetime, the successor gets the same lifetime from now.
 *
 * @example
 * const r = await rotateApiKey(store, "7Hq2xK9a", { graceMs: 24 * 3_600_000 });
 * if (r.ok) console.log(r.key);
 */
export async function rotateApiKey(
  store: KeyStore,
  id: string,
  options: { graceMs?: number; pepper?: string; now?: number } = {},
): Promise<RotateKeyResult> {
  const now = options.now ?? Date.now();
  const old = await store.get(id);
  if (!old) return { ok: false, reason: "not_found" };
  if (old.revokedAt !== undefined) return { ok: false, reason: "revoked" };
  if (old.replacedBy !== undefined) return { ok: false, reason: "already_rotated" };
  if (old.expiresAt !== undefined && now >= old.expiresAt) return { ok: false, reason: "expired" };
  const graceUntil = Math.min(now + (options.graceMs ?? 0), old.expiresAt ?? Number.POSITIVE_INFINITY);
  for (let attempt = 1; ; attempt++) {
    const generated = generateApiKey();
    const next: KeyRecord = {
      id: generated.id,
      hash: hashSecret(generated.secret, options.pepper),
      name: old.name,
      scopes: [...old.scopes],
      createdAt: now,
      probe: old.probe,
      replaces: old.id,
    };
    if (old.tenant !== undefined) next.tenant = old.tenant;
    if (old.expiresAt !== undefined) next.expiresAt = now + (old.expiresAt - old.createdAt);
    if (old.rateLimit) next.rateLimit = { ...old.rateLimit };
    try {
      const r = await store.rotate(old.id, next, graceUntil);
      if (!r.ok) return r;
      return { ok: true, key: generated.key, record: next, old: r.old, graceUntil };
    } catch (err) {
      if (attempt < MAX_ID_ATTEMPTS && err instanceof McpGateError && err.code === "ERR_INVALID_OPTION")
        continue;
      throw err;
    }
  }
}
