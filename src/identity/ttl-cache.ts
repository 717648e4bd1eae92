/**
 * A bounded LRU whose entries die at an instant: the assertion and token-exchange caches. Keys are
 * never credentials (callers hash tokens first). Internal to `identity/`.
 *
 * Entries may name an owner (the caller's principal): one owner holds at most `perOwnerMax` of them
 * and, past that, loses its own least recently used entry — so a caller minting ever-new tokens or
 * sessions churns its own share, never the entries other callers are using.
 */
export interface TtlCache<V> {
  get(key: string): V | undefined;
  /** Keep `value` until `until` (epoch ms); the least recently used entry goes first when full. */
  set(key: string, value: V, until: number, owner?: string): void;
  readonly size: number;
}

interface Entry<V> {
  value: V;
  until: number;
  owner: string | undefined;
}

/**
 * @example
 * const cache = createTtlCache<string>(10_000, Date.now);
 * cache.set("k", "v", Date.now() + 1000, "key:alice");
 */
export function createTtlCache<V>(
  maxEntries: number,
  now: () => number,
  options: { perOwnerMax?: number } = {},
): TtlCache<V> {
  const perOwnerMax = options.perOwnerMax ?? Math.max(16, Math.ceil(maxEntries / 10));
  const entries = new Map<string, Entry<V>>();
  /** Each owner's keys, least recently used first (Map order is insertion order). */
  const owned = new Map<string, Map<string, true>>();

  function remove(key: string): void {
    const e = entries.get(key);
    if (!e) return;
    entries.delete(key);
    if (e.owner === undefined) return;
    const keys = owned.get(e.owner)!;
    keys.delete(key);
    if (keys.size === 0) owned.delete(e.owner);
  }
  function touch(key: string, e: Entry<V>): void {
    // Re-insert to mark as most recently used, in the whole cache and in its owner's share.
    entries.delete(key);
    entries.set(key, e);
    if (e.owner === undefined) return;
    const keys = owned.get(e.owner)!;
    keys.delete(key);
    keys.set(key, true);
  }

  return {
    get(key) {
      const e = entries.get(key);
      if (!e) return undefined;
      if (now() >= e.until) {
        remove(key);
        return undefined;
      }
      touch(key, e);
      return e.value;
    },
    set(key, value, until, owner) {
      if (maxEntries <= 0 || until <= now()) return;
      remove(key);
      entries.set(key, { value, until, owner });
      if (owner !== undefined) {
        const keys = owned.get(owner) ?? new Map<string, true>();
        owned.set(owner, keys);
        keys.set(key, true);
        while (keys.size > perOwnerMax) remove(keys.keys().next().value as string);
      }
      while (entries.size > maxEntries) remove(entries.keys().next().value as string);
    },
    get size() {
      return entries.size;
    },
  };
}

/**
 * Share one in-flight computation per key, so a burst of requests for the same caller signs (or
 * exchanges) once instead of once per request.
 *
 * @example const once = singleFlight<string>(); await once("k", () => sign());
 */
export function singleFlight<V>(): (key: string, fn: () => Promise<V>) => Promise<V> {
  const inFlight = new Map<string, Promise<V>>();
  return (key, fn) => {
    const running = inFlight.get(key);
    if (running) return running;
    const p = fn().finally(() => inFlight.delete(key));
    inFlight.set(key, p);
    return p;
  };
}
