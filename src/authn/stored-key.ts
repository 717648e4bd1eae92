import { timingSafeEqual } from "node:crypto";
import { McpGateError } from "../core/errors.js";
import type { Identity } from "../core/identity.js";
import type { AuthFailureReason } from "../core/outcome.js";
import { type KeyRecord, type KeyStore, keyStatus } from "../stores/key-store.js";
import { hashSecret, looksLikeApiKey, parseApiKey } from "./api-key.js";
import type { CredentialVerifier, VerifyResult } from "./verifier.js";

export interface ApiKeyVerifierOptions {
  store: KeyStore;
  /** HMAC pepper; must be the one the keys were created with. Default: none (plain SHA-256). */
  pepper?: string;
  /**
   * How long a looked-up record (or an unknown id) is reused without asking the store. This bounds
   * how late a revocation made elsewhere is seen (DESIGN.md §5: within 1 s), so it may not exceed
   * 1000 unless `invalidate()` is wired to a revocation feed. Default 1000; 0 disables the cache.
   */
  cacheTtlMs?: number;
  /** Set when a revocation feed (Redis pub/sub) calls `invalidate()`: allows `cacheTtlMs` above 1000. */
  revocationFeed?: boolean;
  /** Bound on cached ids (oldest dropped first). Default 10 000. */
  maxCacheEntries?: number;
  /** How often pending last-used instants are written (one batch per interval). Default 10 000. */
  touchIntervalMs?: number;
  /** Clock (epoch ms); tests inject one. */
  now?: () => number;
  /** Told about failed background last-used writes (they are retried with the next batch). */
  onTouchError?: (err: unknown) => void;
}

/** Default `auth.apiKeys.cacheTtl`: a revocation is seen within 1 s without a revocation feed. */
export const DEFAULT_KEY_CACHE_TTL_MS = 1000;

/** A stored-key verifier, plus the hooks a revocation feed and shutdown need. */
export interface ApiKeyVerifier extends CredentialVerifier {
  readonly kind: "api_key";
  /**
   * Drop a cached record (one id) or the whole cache, so the next use asks the store. A watched
   * key (see `watch`) is checked again at once: a revocation feed ends its open streams now.
   */
  invalidate(id?: string): void;
  /**
   * A signal that fires when the stored key behind `identity` stops being acceptable (revoked,
   * rotated past its grace, deleted, expired) while a stream it opened lasts, until `until` fires
   * (the stream ended). Watched keys are checked every second, and at once on `invalidate(id)`, so
   * an open stream ends within the same 1 s bound as new requests (issue 14 item 5). Undefined for
   * identities that are not stored keys.
   */
  watch(identity: Identity, until: AbortSignal): AbortSignal | undefined;
  /** Write pending last-used instants now. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** How often watched keys are checked when no revocation feed tells us (DESIGN.md §5: within 1 s). */
const WATCH_INTERVAL_MS = 1000;

/** One watched key: the signal its streams share, and how many streams still hold it. */
interface KeyWatch {
  readonly controller: AbortController;
  streams: number;
}

interface CacheEntry {
  record: KeyRecord | undefined;
  fetchedAt: number;
}

// Compared against when the id is unknown, so an unknown id costs the same as a wrong secret.
// Kept as hex and decoded per call like a real record's hash, so an unknown id costs the same work
// (bench/timing.ts measured an 8 % gap when the dummy was a ready Buffer).
const DUMMY_HASH_HEX = "0".repeat(64);

/**
 * Verify `mcpg_…` keys against a `KeyStore`: parse → checksum → cached lookup by id → constant-time
 * digest compare → revoked / expired / rotation-grace checks → `Identity`. The secret is compared
 * before any status is looked at, so a caller without the secret learns nothing about a key id.
 *
 * @example
 * const store = await openKeyStore("sqlite:./mcpgate.db");
 * const verifier = createApiKeyVerifier({ store, pepper: process.env.MCPGATE_KEY_PEPPER });
 * const result = await verifier.verify(token); // { ok: true, identity } | { ok: false, reason }
 */
export function createApiKeyVerifier(options: ApiKeyVerifierOptions): ApiKeyVerifier {
  const store = options?.store;
  if (!store || typeof store.get !== "function") {
    throw new McpGateError("ERR_INVALID_OPTION", "createApiKeyVerifier: store is required");
  }
  const cacheTtlMs = options.cacheTtlMs ?? DEFAULT_KEY_CACHE_TTL_MS;
  if (!Number.isFinite(cacheTtlMs) || cacheTtlMs < 0) {
    throw new McpGateError("ERR_INVALID_OPTION", "createApiKeyVerifier: cacheTtlMs must be a number ≥ 0");
  }
  if (cacheTtlMs > 1000 && options.revocationFeed !== true) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      "createApiKeyVerifier: cacheTtlMs above 1000 would delay revocations beyond 1 s; set revocationFeed when invalidate() is wired to one",
    );
  }
  const maxCacheEntries = options.maxCacheEntries ?? 10_000;
  const touchIntervalMs = options.touchIntervalMs ?? 10_000;
  if (!(touchIntervalMs > 0)) {
    throw new McpGateError("ERR_INVALID_OPTION", "createApiKeyVerifier: touchIntervalMs must be > 0");
  }
  const now = options.now ?? Date.now;
  const pepper = options.pepper;

  const cache = new Map<string, CacheEntry>();
  const inflight = new Map<string, Promise<KeyRecord | undefined>>();
  // Bumped by invalidate(): a lookup that started before an invalidation must not refill the cache.
  let generation = 0;
  const pendingTouches = new Map<string, number>();
  let flushing: Promise<void> | undefined;
  let closed = false;

  const timer = setInterval(() => {
    void flush();
  }, touchIntervalMs);
  timer.unref();

  async function flush(): Promise<void> {
    if (flushing) await flushing;
    if (pendingTouches.size === 0) return;
    const batch = [...pendingTouches].map(([id, at]) => ({ id, at }));
    pendingTouches.clear();
    flushing = store.touch(batch).then(
      () => {},
      (err) => {
        // Keep the instants for the next batch unless a newer one arrived meanwhile.
        for (const { id, at } of batch) if ((pendingTouches.get(id) ?? 0) < at) pendingTouches.set(id, at);
        options.onTouchError?.(err);
      },
    );
    try {
      await flushing;
    } finally {
      flushing = undefined;
    }
  }

  async function lookup(id: string): Promise<KeyRecord | undefined> {
    const t = now();
    const hit = cache.get(id);
    if (hit && cacheTtlMs > 0 && t - hit.fetchedAt < cacheTtlMs) return hit.record;
    const pending = inflight.get(id);
    if (pending) return pending;
    const gen = generation;
    const p = store
      .get(id)
      .then(
        (record) => {
          if (cacheTtlMs > 0 && gen === generation) {
            cache.delete(id);
            cache.set(id, { record, fetchedAt: t });
            if (cache.size > maxCacheEntries) cache.delete(cache.keys().next().value as string);
          }
          return record;
        },
        (err) => {
          throw err instanceof McpGateError && err.code === "ERR_STORE_UNAVAILABLE"
            ? err
            : new McpGateError("ERR_STORE_UNAVAILABLE", "key store lookup failed", { cause: err });
        },
      )
      .finally(() => inflight.delete(id));
    inflight.set(id, p);
    return p;
  }

  // Keys with open streams (issue 14 item 5), checked every second while any is watched.
  const watched = new Map<string, KeyWatch>();
  let watchTimer: ReturnType<typeof setInterval> | undefined;

  async function recheck(id: string): Promise<void> {
    const w = watched.get(id);
    if (!w) return;
    let record: KeyRecord | undefined;
    try {
      record = await store.get(id);
    } catch {
      // Store unreachable: new requests get 503 meanwhile; the stream is checked again next tick.
      return;
    }
    const status = record ? keyStatus(record, now()) : "revoked";
    if (status === "revoked" || status === "rotated" || status === "expired") {
      if (watched.get(id) === w) watched.delete(id);
      stopWatchTimer();
      w.controller.abort(new Error("the API key is no longer valid"));
    }
  }
  function recheckAll(): void {
    for (const id of watched.keys()) void recheck(id);
  }
  function stopWatchTimer(): void {
    if (watched.size === 0 && watchTimer) {
      clearInterval(watchTimer);
      watchTimer = undefined;
    }
  }

  function deny(reason: AuthFailureReason): VerifyResult {
    return { ok: false, reason };
  }

  return {
    kind: "api_key",
    accepts: looksLikeApiKey,
    async verify(token: string): Promise<VerifyResult> {
      const parsed = parseApiKey(token);
      if (!parsed.ok) return deny(parsed.reason);
      const presented = Buffer.from(hashSecret(parsed.secret, pepper), "hex");
      const record = await lookup(parsed.id);
      const stored = Buffer.from(record ? record.hash : DUMMY_HASH_HEX, "hex");
      const match = stored.length === presented.length && timingSafeEqual(stored, presented);
      if (!record) return deny("unknown_key");
      if (!match) return deny("invalid");
      const t = now();
      const status = keyStatus(record, t);
      if (status === "revoked" || status === "rotated") return deny("revoked");
      if (status === "expired") return deny("expired");
      if (!closed) pendingTouches.set(record.id, t);
      return { ok: true, identity: toIdentity(record) };
    },
    invalidate(id?: string) {
      generation++;
      if (id === undefined) cache.clear();
      else cache.delete(id);
      if (id === undefined) recheckAll();
      else if (watched.has(id)) void recheck(id);
    },
    watch(identity: Identity, until: AbortSignal): AbortSignal | undefined {
      if (identity.kind !== "api_key" || closed || until.aborted) return undefined;
      const id = identity.subject;
      let w = watched.get(id);
      if (!w) {
        w = { controller: new AbortController(), streams: 0 };
        watched.set(id, w);
        if (!watchTimer) {
          watchTimer = setInterval(recheckAll, WATCH_INTERVAL_MS);
          watchTimer.unref();
        }
      }
      const entry = w;
      entry.streams++;
      until.addEventListener(
        "abort",
        () => {
          if (--entry.streams > 0 || watched.get(id) !== entry) return;
          watched.delete(id);
          stopWatchTimer();
        },
        { once: true },
      );
      return entry.controller.signal;
    },
    flush,
    async close() {
      closed = true;
      clearInterval(timer);
      if (watchTimer) clearInterval(watchTimer);
      watched.clear();
      await flush();
    },
  };
}

/**
 * The identity a verified stored key resolves to. `expiresAt` (epoch seconds) is the earlier of the
 * key's expiry and the end of its rotation grace.
 *
 * @example toIdentity(record).principal // "key:7Hq2xK9a"
 */
export function toIdentity(record: KeyRecord): Identity {
  const identity: Identity = {
    principal: `key:${record.id}`,
    kind: "api_key",
    subject: record.id,
    scopes: [...record.scopes],
    displayPrefix: `mcpg_${record.id}`,
    probe: record.probe,
  };
  if (record.tenant !== undefined) identity.tenant = record.tenant;
  const ends = [record.expiresAt, record.replacedBy !== undefined ? record.graceUntil : undefined].filter(
    (v): v is number => v !== undefined,
  );
  if (ends.length > 0) identity.expiresAt = Math.floor(Math.min(...ends) / 1000);
  if (record.rateLimit?.perMinute !== undefined) identity.limits = { perMinute: record.rateLimit.perMinute };
  return identity;
}
