import { McpGateError } from "../core/errors.js";
import {
  copyKeyRecord,
  type KeyRecord,
  type KeyStore,
  type RevokeResult,
  type RotateResult,
} from "./key-store.js";

/**
 * An in-process key store, for tests and single-process demos (`memory:`). Records are copied in
 * and out, so callers never alias its state.
 *
 * @example
 * const store = createMemoryKeyStore();
 * await store.init();
 */
export function createMemoryKeyStore(): KeyStore {
  const records = new Map<string, KeyRecord>();
  let closed = false;
  const live = () => {
    if (closed) throw new McpGateError("ERR_STORE_UNAVAILABLE", "memory key store is closed");
  };
  return {
    kind: "memory",
    async init() {
      closed = false;
    },
    async close() {
      closed = true;
    },
    async create(record) {
      live();
      if (records.has(record.id))
        throw new McpGateError("ERR_INVALID_OPTION", `key id ${record.id} already exists`);
      records.set(record.id, copyKeyRecord(record));
    },
    async get(id) {
      live();
      const r = records.get(id);
      return r ? copyKeyRecord(r) : undefined;
    },
    async list(filter) {
      live();
      const all = [...records.values()].filter(
        (r) => filter?.tenant === undefined || r.tenant === filter.tenant,
      );
      return all.sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id)).map(copyKeyRecord);
    },
    async revoke(id, at = Date.now()): Promise<RevokeResult> {
      live();
      const r = records.get(id);
      if (!r) return { ok: false, reason: "not_found" };
      const alreadyRevoked = r.revokedAt !== undefined;
      if (!alreadyRevoked) r.revokedAt = at;
      return { ok: true, record: copyKeyRecord(r), alreadyRevoked };
    },
    async rotate(oldId, next, graceUntil): Promise<RotateResult> {
      live();
      const old = records.get(oldId);
      if (!old) return { ok: false, reason: "not_found" };
      if (old.revokedAt !== undefined) return { ok: false, reason: "revoked" };
      if (old.replacedBy !== undefined) return { ok: false, reason: "already_rotated" };
      if (records.has(next.id))
        throw new McpGateError("ERR_INVALID_OPTION", `key id ${next.id} already exists`);
      records.set(next.id, { ...copyKeyRecord(next), replaces: oldId });
      old.replacedBy = next.id;
      old.graceUntil = graceUntil;
      return { ok: true, old: copyKeyRecord(old) };
    },
    async touch(entries) {
      live();
      for (const { id, at } of entries) {
        const r = records.get(id);
        if (r && (r.lastUsedAt === undefined || at > r.lastUsedAt)) r.lastUsedAt = at;
      }
    },
  };
}
