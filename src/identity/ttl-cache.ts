/**
 * A bounded LRU whose entries die at an instant: the assertion and token-exchange caches. Keys are
 * never credentials (callers hash tokens first). Internal to `identity/`.
 */
export interface TtlCache<V> {
  get(key: string): V | undefined;
  /** Keep `value` until `until` (epoch ms); the least recently used entry goes first when full. */
  set(key: string, value: V, until: number): void;
  readonly size: number;
}

/**
 * @example
 * const cache = createTtlCache<string>(10_000, Date.now);
 * cache.set("k", "v", Date.now() + 1000);
 */
export function createTtlCache<V>(maxEntries: number, now: () => number): TtlCache<V> {
  const entries = new Map<string, { value: V; until: number }>();
  return {
    get(key) {
      const e = entries.get(key);
      if (!e) return undefined;
      if (now() >= e.until) {
        entries.delete(key);
        return undefined;
      }
      // Map order is insertion order: re-insert to mark as most recently used.
      entries.delete(key);
      entries.set(key, e);
      return e.value;
    },
    set(key, value, until) {
      if (maxEntries <= 0 || until <= now()) return;
      entries.delete(key);
      entries.set(key, { value, until });
      while (entries.size > maxEntries) entries.delete(entries.keys().next().value as string);
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
