import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import type { StateStore } from "../core/contracts.js";
import { guardKeyOf } from "../observe/guard.js";

/**
 * Rules for the clients the authorization server accepts (DESIGN.md §9): redirect URIs of
 * dynamically registered clients, the SSRF guard in front of Client ID Metadata Document fetches,
 * and the registration rate limit.
 */

// RFC 6890 special-purpose ranges an AS must never be made to fetch from (MCP security best
// practices "SSRF": private, loopback, link-local, CGNAT, documentation, multicast, reserved).
const SPECIAL = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 3],
] as const)
  SPECIAL.addSubnet(net, bits, "ipv4");
for (const [net, bits] of [
  ["::", 127],
  ["::ffff:0:0", 96],
  ["64:ff9b::", 96],
  ["100::", 64],
  ["2001:db8::", 32],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
] as const)
  SPECIAL.addSubnet(net, bits, "ipv6");

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/**
 * Whether an address is special-purpose (private, loopback, link-local, …).
 *
 * @example isSpecialAddress("10.1.2.3") // true
 */
export function isSpecialAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true; // not an address at all: refuse
  return SPECIAL.check(address, family === 4 ? "ipv4" : "ipv6");
}

/** Whether a URL host (as `URL.hostname` gives it) is loopback: localhost, 127/8, [::1]. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost") return true;
  const family = isIP(h);
  return family !== 0 && LOOPBACK.check(h, family === 4 ? "ipv4" : "ipv6");
}

/**
 * A redirect URI a client may register (RFC 7591 §2, OAuth 2.1 §2.3.1, RFC 8252 §7.3): https, or
 * http on a loopback host (native apps listen there); no fragment, no credentials in the URL.
 *
 * @example isAllowedRedirectUri("http://127.0.0.1:33418/callback") // true
 */
export function isAllowedRedirectUri(uri: unknown): boolean {
  if (typeof uri !== "string" || uri.length > 2048) return false;
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return false;
  }
  if (u.hash || u.username || u.password) return false;
  if (u.protocol === "https:") return true;
  return u.protocol === "http:" && isLoopbackHost(u.hostname);
}

/**
 * Whether a CIMD `client_id` URL may be fetched: every address its host resolves to must be public
 * (the connection itself is checked again by oidc-provider's guarded dispatcher, which also stops
 * DNS rebinding between this lookup and the connect).
 */
export async function isFetchableMetadataUrl(
  clientId: string,
  resolve: (host: string) => Promise<string[]> = resolveAll,
): Promise<boolean> {
  let u: URL;
  try {
    u = new URL(clientId);
  } catch {
    return false;
  }
  if (u.protocol !== "https:") return false;
  const host = u.hostname.replace(/^\[|\]$/g, "");
  let addresses: string[];
  try {
    addresses = isIP(host) ? [host] : await resolve(host);
  } catch {
    return false;
  }
  return addresses.length > 0 && addresses.every((a) => !isSpecialAddress(a));
}

async function resolveAll(host: string): Promise<string[]> {
  return (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
}

/** One budget of {@link createWindowLimiter}: a key and the units it allows per window. */
export interface WindowBudget {
  key: string;
  limit: number;
}

/**
 * Fixed-window counters, bounded in memory: registrations (RFC 7591) cost a database row each, so a
 * source may register only so many clients per window. `take` takes one unit from every budget it
 * is given, or from none: a caller refused by one budget spends nothing of the others.
 *
 * @example
 * const rl = createWindowLimiter({ windowMs: 60_000 });
 * rl.take([{ key: "10.0.0.1", limit: 10 }]); // true
 */
export function createWindowLimiter(options: { windowMs: number; maxSources?: number; now?: () => number }): {
  take(budgets: readonly WindowBudget[]): boolean;
} {
  const now = options.now ?? Date.now;
  const maxSources = options.maxSources ?? 10_000;
  const windows = new Map<string, { start: number; count: number }>();
  const open = (t: number, key: string) => {
    const w = windows.get(key);
    return w && t - w.start < options.windowMs ? w : undefined;
  };
  const untracked = (budgets: readonly WindowBudget[]) => budgets.filter((b) => !windows.has(b.key)).length;
  return {
    take(budgets) {
      const t = now();
      if (budgets.some((b) => (open(t, b.key)?.count ?? 0) >= b.limit)) return false;
      if (windows.size + untracked(budgets) > maxSources) {
        for (const [k, v] of windows) if (t - v.start >= options.windowMs) windows.delete(k);
        // Still full: every tracked source is inside its window. Refuse newcomers rather than grow.
        if (windows.size + untracked(budgets) > maxSources) return false;
      }
      for (const b of budgets) {
        let w = open(t, b.key);
        if (!w) {
          w = { start: t, count: 0 };
          windows.set(b.key, w);
        }
        w.count++;
      }
      return true;
    },
  };
}

/**
 * The key a caller's registrations are counted under: the credential guard's (an IPv4 address
 * itself, an IPv6 address by its /64, an IPv4-mapped one as the IPv4 address).
 */
export const registrationSourceKey = guardKeyOf;

/**
 * The /48 an IPv6 caller's registrations are also counted under, or `undefined` for an IPv4 (or
 * IPv4-mapped) caller, who has only its address's budget. A /48 is what one end site, or one hosting
 * customer, is routinely given (RFC 3177 §3; RFC 6177 allows /48 to /56): 65 536 /64s, so a budget
 * per /64 alone would give whoever holds one 65 536 budgets.
 *
 * @example registrationSiteKey("2001:db8:1:2::a") // "2001:db8:1::/48"
 */
export function registrationSiteKey(source: string): string | undefined {
  const slash64 = registrationSourceKey(source);
  const prefix = slash64.endsWith("/64") ? slash64.slice(0, -"/64".length) : "";
  // guardKeyOf writes a /64 in canonical form (RFC 5952 §4.2): its four zero groups last, as "::".
  if (isIP(prefix) !== 6 || !prefix.endsWith("::")) return undefined;
  const groups = prefix
    .slice(0, -2)
    .split(":")
    .filter((g) => g !== "");
  while (groups.length < 3) groups.push("0");
  return `${new URL(`http://[${groups.slice(0, 3).join(":")}::]/`).hostname.slice(1, -1)}/48`;
}

/** How many times the per-source limit an IPv6 /48 gets when `ipv6Slash48Limit` is not set. */
export const DEFAULT_IPV6_SLASH48_FACTOR = 4;

/** Answer of {@link RegistrationLimiter.take}. */
export type RegistrationAllowance = { ok: true } | { ok: false; retryAfterSec: number };

/** Registrations (RFC 7591) allowed per source: each one costs a stored client. */
export interface RegistrationLimiter {
  /**
   * Take one registration from the budget of the caller's address (keyed by
   * {@link registrationSourceKey}) and, for IPv6, of its /48 ({@link registrationSiteKey}): both or
   * neither.
   */
  take(source: string): Promise<RegistrationAllowance>;
}

/**
 * The registration limit: `limit` per `windowMs` per IPv4 address or IPv6 /64, and
 * `ipv6Slash48Limit` (default {@link DEFAULT_IPV6_SLASH48_FACTOR} × `limit`) per IPv6 /48, checked
 * together. With `state` (the gateway's Redis state store with `state.redis`) the budgets are the
 * store's GCRA buckets, shared by every instance and updated in one atomic step; without it, fixed
 * windows in this process. A store outage throws `ERR_STORE_UNAVAILABLE` (the caller refuses the
 * registration: fail closed).
 *
 * @example
 * const limiter = createRegistrationLimiter({ limit: 10, windowMs: 60_000 });
 * await limiter.take("2001:db8:1:2::a"); // { ok: true }
 */
export function createRegistrationLimiter(options: {
  limit: number;
  windowMs: number;
  /** Registrations per IPv6 /48 per window. Default {@link DEFAULT_IPV6_SLASH48_FACTOR} × `limit`. */
  ipv6Slash48Limit?: number;
  state?: Pick<StateStore, "admit">;
  now?: () => number;
}): RegistrationLimiter {
  const { limit, windowMs, state } = options;
  const siteLimit = options.ipv6Slash48Limit ?? DEFAULT_IPV6_SLASH48_FACTOR * limit;
  if (!Number.isInteger(siteLimit) || siteLimit < 1)
    throw new TypeError("registrationRateLimit.ipv6Slash48Limit must be a positive integer");
  const now = options.now ?? Date.now;
  const budgetsOf = (source: string): WindowBudget[] => {
    const site = registrationSiteKey(source);
    const own = { key: registrationSourceKey(source), limit };
    return site ? [own, { key: site, limit: siteLimit }] : [own];
  };
  if (!state) {
    const windows = createWindowLimiter({ windowMs, now });
    const retryAfterSec = Math.max(1, Math.ceil(windowMs / 1000));
    return {
      async take(source) {
        return windows.take(budgetsOf(source)) ? { ok: true } : { ok: false, retryAfterSec };
      },
    };
  }
  return {
    async take(source) {
      // One admit for both buckets: the store takes from all of them or from none (StateStore.admit).
      const buckets = budgetsOf(source).map((b) => ({
        key: `rl:register:${b.key}`,
        limit: b.limit,
        windowMs,
        policy: "register",
      }));
      const { rate } = await state.admit({ buckets, nowMs: now() });
      if (!rate || rate.ok) return { ok: true };
      return { ok: false, retryAfterSec: Math.max(1, Math.ceil(rate.retryAfterMs / 1000)) };
    },
  };
}
