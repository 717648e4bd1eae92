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

/**
 * A fixed-window counter per source address, bounded in memory: registrations (RFC 7591) cost a
 * database row each, so one address may register only `limit` clients per window.
 *
 * @example const rl = createWindowLimiter({ limit: 10, windowMs: 60_000 }); rl.take("10.0.0.1") // true
 */
export function createWindowLimiter(options: {
  limit: number;
  windowMs: number;
  maxSources?: number;
  now?: () => number;
}): { take(source: string): boolean } {
  const now = options.now ?? Date.now;
  const maxSources = options.maxSources ?? 10_000;
  const windows = new Map<string, { start: number; count: number }>();
  return {
    take(source) {
      const t = now();
      let w = windows.get(source);
      if (!w || t - w.start >= options.windowMs) {
        if (!w && windows.size >= maxSources) {
          for (const [k, v] of windows) if (t - v.start >= options.windowMs) windows.delete(k);
          // Still full: every tracked source is inside its window. Refuse newcomers rather than grow.
          if (windows.size >= maxSources) return false;
        }
        w = { start: t, count: 0 };
        windows.set(source, w);
      }
      if (w.count >= options.limit) return false;
      w.count++;
      return true;
    },
  };
}

/**
 * The key a caller's registrations are counted under: the credential guard's (an IPv4 address
 * itself, an IPv6 address by its /64, an IPv4-mapped one as the IPv4 address).
 */
export const registrationSourceKey = guardKeyOf;

/** Answer of {@link RegistrationLimiter.take}. */
export type RegistrationAllowance = { ok: true } | { ok: false; retryAfterSec: number };

/** Registrations (RFC 7591) allowed per source: each one costs a stored client. */
export interface RegistrationLimiter {
  /** Take one registration from the budget of the caller's address (keyed by {@link registrationSourceKey}). */
  take(source: string): Promise<RegistrationAllowance>;
}

/**
 * The per-source registration limit: `limit` per `windowMs`, per IPv4 address or IPv6 /64. With
 * `state` (the gateway's Redis state store with `state.redis`) the budgets are the store's GCRA
 * buckets, shared by every instance; without it, a fixed window in this process. A store outage
 * throws `ERR_STORE_UNAVAILABLE` (the caller refuses the registration: fail closed).
 *
 * @example
 * const limiter = createRegistrationLimiter({ limit: 10, windowMs: 60_000 });
 * await limiter.take("2001:db8:1:2::a"); // { ok: true }
 */
export function createRegistrationLimiter(options: {
  limit: number;
  windowMs: number;
  state?: Pick<StateStore, "admit">;
  now?: () => number;
}): RegistrationLimiter {
  const { limit, windowMs, state } = options;
  const now = options.now ?? Date.now;
  if (!state) {
    const windows = createWindowLimiter({ limit, windowMs, now });
    const retryAfterSec = Math.max(1, Math.ceil(windowMs / 1000));
    return {
      async take(source) {
        return windows.take(registrationSourceKey(source)) ? { ok: true } : { ok: false, retryAfterSec };
      },
    };
  }
  return {
    async take(source) {
      const bucket = {
        key: `rl:register:${registrationSourceKey(source)}`,
        limit,
        windowMs,
        policy: "register",
      };
      const { rate } = await state.admit({ buckets: [bucket], nowMs: now() });
      if (!rate || rate.ok) return { ok: true };
      return { ok: false, retryAfterSec: Math.max(1, Math.ceil(rate.retryAfterMs / 1000)) };
    },
  };
}
