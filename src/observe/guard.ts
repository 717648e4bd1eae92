import { BlockList, isIP } from "node:net";
import type { Guard } from "../core/contracts.js";

/**
 * Credential-guessing defence (DESIGN.md §2 "guard"): per source address, a window of failed
 * authentications; at `failures` failures inside `windowMs` the source is locked out (429 +
 * Retry-After) for `lockoutMs`. The counters live in a {@link GuardStore}: memory here, Redis in
 * `stores/redis-guard.ts` so that every instance behind a load balancer agrees.
 *
 * The object returned by {@link createGuard} is the gate's `Guard` (core/contracts.ts).
 */

/** Lockout parameters handed to a store on every failure. */
export interface GuardLimits {
  failures: number;
  windowMs: number;
  lockoutMs: number;
}

/** Where failure counters and locks live. */
export interface GuardStore {
  /**
   * Count one failure for `key`. When the count inside the window reaches `failures`, lock the key
   * for `lockoutMs` and reset the count. Returns the ms left on the lock (0: not locked) and
   * whether this very call created the lock (so a lockout is announced once).
   */
  recordFailure(key: string, limits: GuardLimits): Promise<{ lockedMs: number; created: boolean }>;
  /** Milliseconds left on the key's lock, 0 when none. */
  lockedMs(key: string): Promise<number>;
  close?(): Promise<void>;
}

/** Options of {@link createMemoryGuardStore}. */
export interface MemoryGuardStoreOptions {
  /** Largest number of tracked sources; the oldest are forgotten first. Default 100 000. */
  maxEntries?: number;
  now?: () => number;
}

/**
 * The in-process guard store (one instance, or tests).
 *
 * @example createGuard({ store: createMemoryGuardStore() })
 */
export function createMemoryGuardStore(options: MemoryGuardStoreOptions = {}): GuardStore {
  const maxEntries = options.maxEntries ?? 100_000;
  const now = options.now ?? Date.now;
  const counts = new Map<string, { count: number; resetAt: number }>();
  const locks = new Map<string, number>();

  function bound<V>(map: Map<string, V>): void {
    // Map iteration is insertion order: drop the oldest entries.
    while (map.size > maxEntries) map.delete(map.keys().next().value as string);
  }

  return {
    async recordFailure(key, limits) {
      const t = now();
      const until = locks.get(key);
      if (until !== undefined && until > t) return { lockedMs: until - t, created: false };
      let c = counts.get(key);
      if (!c || c.resetAt <= t) {
        counts.delete(key);
        c = { count: 0, resetAt: t + limits.windowMs };
        counts.set(key, c);
        bound(counts);
      }
      c.count++;
      if (c.count < limits.failures) return { lockedMs: 0, created: false };
      counts.delete(key);
      locks.delete(key);
      locks.set(key, t + limits.lockoutMs);
      bound(locks);
      return { lockedMs: limits.lockoutMs, created: true };
    },
    async lockedMs(key) {
      const until = locks.get(key);
      if (until === undefined) return 0;
      const left = until - now();
      if (left <= 0) {
        locks.delete(key);
        return 0;
      }
      return left;
    },
  };
}

/** Options of {@link createGuard}. Defaults follow DESIGN.md §7. */
export interface GuardOptions {
  /** Failures inside the window that lock a source out. Default 20. */
  failures?: number;
  /** Window of the failure count. Default 60 000 ms. */
  windowMs?: number;
  /** How long a locked-out source is refused. Default 900 000 ms (15 min). */
  lockoutMs?: number;
  /**
   * Whether `X-Forwarded-For` is believed. `false` (default): the TCP peer is the source.
   * `true`: the peer is one trusted proxy, and the source is the right-most X-Forwarded-For entry
   * (the one that proxy appended). A number n: n trusted proxy hops. Entries listed in
   * `trustedProxies` are skipped as well. The source is the right-most untrusted hop.
   */
  trustProxy?: boolean | number;
  /** Further proxy addresses or CIDRs (e.g. "10.0.0.0/8") never taken as the source. */
  trustedProxies?: string[];
  store?: GuardStore;
  /** Told once per new lockout (metrics, alert). */
  onLockout?: (source: string, seconds: number) => void;
  /** Told when the store fails; the guard then lets the request through to authentication. */
  onStoreError?: (err: unknown) => void;
}

/**
 * The guard the gate calls (core/contracts.ts `Guard`): `lockedFor` answers seconds left (0: free),
 * `recordFailure` the lockout in seconds when that failure locked the source (else 0).
 */
export interface CredentialGuard extends Guard {
  close(): Promise<void>;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v <= 0) throw new TypeError(`createGuard: ${name} must be a positive number`);
  return v;
}

/** "::ffff:1.2.3.4" → "1.2.3.4"; trims and drops an IPv6 zone. */
export function normalizeAddress(address: string): string {
  let a = address.trim();
  if (a.startsWith("[") && a.includes("]")) a = a.slice(1, a.indexOf("]"));
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(a);
  return mapped ? mapped[1]! : a.toLowerCase();
}

/** The eight 16-bit groups of a valid IPv6 address (any spelling: compressed, upper case, dotted tail). */
function ipv6Groups(address: string): number[] {
  // The WHATWG URL parser is the platform's IPv6 parser: it gives the canonical text, all hex.
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const [head = "", tail] = canonical.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const zeros = tail === undefined ? [] : Array(8 - left.length - right.length).fill("0");
  return [...left, ...zeros, ...right].map((g) => Number.parseInt(g, 16));
}

/**
 * The counter key of a source (failed authentications, registrations): an IPv4 address itself; an IPv6 address by
 * its /64 (RFC 4291 §2.5.4: a /64 is one link, and every IPv6 host is handed one, so counting single
 * addresses would give each caller 2^64 budgets); an IPv4-mapped address (`::ffff:a.b.c.d`, either
 * spelling) as the IPv4 one. Brackets and zone ids are ignored. Anything that is not an address
 * shares the one key `invalid`.
 *
 * @example guardKeyOf("2001:db8:1:2:aaaa::1") // "2001:db8:1:2::/64"
 */
export function guardKeyOf(source: string): string {
  let a = source.trim();
  if (a.startsWith("[") && a.includes("]")) a = a.slice(1, a.indexOf("]"));
  if (a.includes("%")) a = a.slice(0, a.indexOf("%"));
  const family = isIP(a);
  if (family === 4) return a;
  // Not an address (a forged hop: sourceOf says "invalid"): one key for all such sources, so no
  // caller can name a budget, or someone else's.
  if (family !== 6) return "invalid";
  const g = ipv6Groups(a);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return [g[6]! >> 8, g[6]! & 0xff, g[7]! >> 8, g[7]! & 0xff].join(".");
  }
  const prefix = new URL(
    `http://[${g
      .slice(0, 4)
      .map((x) => x.toString(16))
      .join(":")}::]/`,
  ).hostname;
  return `${prefix.slice(1, -1)}/64`;
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string[] {
  const v = headers[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/**
 * Build the credential-guessing guard.
 *
 * @example
 * const guard = createGuard({ failures: 20, windowMs: 60_000, lockoutMs: 900_000 });
 * createGate({ verifiers, publicUrl, guard });
 */
export function createGuard(options: GuardOptions = {}): CredentialGuard {
  const limits: GuardLimits = {
    failures: Math.floor(positive(options.failures, 20, "failures")),
    windowMs: positive(options.windowMs, 60_000, "windowMs"),
    lockoutMs: positive(options.lockoutMs, 900_000, "lockoutMs"),
  };
  const tp = options.trustProxy ?? false;
  if (typeof tp === "number" && (!Number.isInteger(tp) || tp < 0))
    throw new TypeError("createGuard: trustProxy must be a boolean or a non-negative integer");
  const hops = tp === true ? 1 : tp === false ? 0 : tp;
  const trusted = new BlockList();
  for (const entry of options.trustedProxies ?? []) {
    const [addr, bits] = entry.split("/") as [string, string | undefined];
    const type = isIP(addr);
    if (type === 0)
      throw new TypeError(`createGuard: trustedProxies: "${entry}" is not an IP address or CIDR`);
    const family = type === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) trusted.addAddress(addr, family);
    else trusted.addSubnet(addr, Number(bits), family);
  }
  const isTrusted = (a: string) => {
    const type = isIP(a);
    return type !== 0 && trusted.check(a, type === 6 ? "ipv6" : "ipv4");
  };
  const store = options.store ?? createMemoryGuardStore();

  function sourceOf(
    remoteAddress: string | undefined,
    headers: Record<string, string | string[] | undefined>,
  ): string {
    const peer = normalizeAddress(remoteAddress ?? "unknown");
    if (hops === 0) return peer;
    // RFC 7239 §5.2 / X-Forwarded-For: each proxy appends the address it received from. Walk from
    // the right, skipping the hops we trust; the first other hop is the client. Entries further
    // left were written by the client itself and prove nothing.
    const chain = header(headers, "x-forwarded-for")
      .join(",")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "")
      .map(normalizeAddress);
    chain.push(peer);
    let skipped = 0;
    for (let i = chain.length - 1; i >= 0; i--) {
      const hop = chain[i]!;
      if (skipped < hops || isTrusted(hop)) {
        skipped++;
        continue;
      }
      // A hop a trusted proxy wrote is an address; anything else is forged: one shared bucket.
      return isIP(hop) ? hop : "invalid";
    }
    // Fewer hops than trusted proxies: the first one is the client's own word — an address, or
    // the one shared bucket, never a key of its choosing.
    const first = chain[0]!;
    return isIP(first) ? first : "invalid";
  }

  return {
    sourceOf,
    async lockedFor(source) {
      try {
        const ms = await store.lockedMs(guardKeyOf(source));
        return ms > 0 ? Math.max(1, Math.ceil(ms / 1000)) : 0;
      } catch (err) {
        // The guard is a second line: credentials are still verified, so a store outage lets the
        // request through to authentication instead of refusing everyone (documented).
        options.onStoreError?.(err);
        return 0;
      }
    },
    async recordFailure(source) {
      try {
        const r = await store.recordFailure(guardKeyOf(source), limits);
        if (r.lockedMs <= 0) return 0;
        const seconds = Math.max(1, Math.ceil(r.lockedMs / 1000));
        if (r.created) options.onLockout?.(source, seconds);
        return seconds;
      } catch (err) {
        options.onStoreError?.(err);
        return 0;
      }
    },
    async close() {
      await store.close?.();
    },
  };
}
