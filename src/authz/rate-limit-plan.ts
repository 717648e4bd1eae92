import type { RateBucket, RateLimitPlanner } from "../core/contracts.js";
import { McpGateError } from "../core/errors.js";
import type { Identity } from "../core/identity.js";
import type { InspectedMessage } from "../core/message.js";
import { compileGlob } from "./policy.js";

/** One per-tool limit (`rateLimit.tools[]`), window already in milliseconds. */
export interface ToolLimitInput {
  /** Tool-name glob, same syntax as policy rules; the first matching entry applies. */
  match: string;
  limit: number;
  windowMs: number;
}

/** Options of {@link createRateLimitPlanner}: the `rateLimit` section, durations resolved. */
export interface RateLimitPlanInput {
  /** Every request of a principal (each JSON-RPC message counts one; a GET/DELETE counts one). */
  perPrincipal?: { limit: number; windowMs: number };
  tools?: readonly ToolLimitInput[];
  /** Admit requests when the state store is unreachable (default false: 503). */
  failOpen?: boolean;
}

const MINUTE_MS = 60_000;

function checkLimit(where: string, limit: number, windowMs: number): void {
  if (!Number.isInteger(limit) || limit <= 0) {
    throw new McpGateError("ERR_INVALID_OPTION", `${where}.limit must be a positive integer`);
  }
  if (!Number.isFinite(windowMs) || windowMs < 1000) {
    throw new McpGateError("ERR_INVALID_OPTION", `${where}.window must be at least 1s`);
  }
}

/**
 * A name safe inside a structured-field string (RateLimit-Policy, draft-ietf-httpapi-ratelimit-headers):
 * printable ASCII without `"` and `\`.
 */
function policyName(prefix: string, glob: string): string {
  return `${prefix}${glob.replace(/[^\x21\x23-\x5b\x5d-\x7e]/g, "_")}`;
}

/**
 * Build the planner that tells the gate which rate-limit buckets a request takes from.
 *
 * - `rl:p:<principal>`: all requests of one caller. A key record's `rateLimit.perMinute`
 *   (identity.limits.perMinute) replaces the configured limit for that key, over one minute.
 * - `rl:t:<glob>:<principal>`: `tools/call` of tools matching a `rateLimit.tools` glob, per caller;
 *   the first matching entry applies, and all tools matching one glob share its bucket.
 *
 * Keys carry the principal (a key id or issuer#subject), never a credential. The glob is
 * URI-encoded so that the first `:` after it ends it (no two (glob, principal) pairs share a key).
 *
 * @example
 * const planner = createRateLimitPlanner({ perPrincipal: { limit: 600, windowMs: 60_000 } });
 * planner.bucketsFor(identity, messages) // [{ key: "rl:p:key:7Hq2xK9a", limit: 600, windowMs: 60000, policy: "principal", cost: 1 }]
 */
export function createRateLimitPlanner(input: RateLimitPlanInput = {}): RateLimitPlanner {
  if (input.perPrincipal)
    checkLimit("rateLimit.perPrincipal", input.perPrincipal.limit, input.perPrincipal.windowMs);
  const tools = (input.tools ?? []).map((t, i) => {
    checkLimit(`rateLimit.tools[${i}]`, t.limit, t.windowMs);
    return {
      test: compileGlob(t.match),
      limit: t.limit,
      windowMs: t.windowMs,
      keyPart: encodeURIComponent(t.match),
      policy: policyName("tool:", t.match),
    };
  });
  const perPrincipal = input.perPrincipal ? { ...input.perPrincipal } : undefined;

  function bucketsFor(identity: Identity, messages: readonly InspectedMessage[]): RateBucket[] {
    const buckets: RateBucket[] = [];
    const override = identity.limits?.perMinute;
    const principalLimit =
      override !== undefined && Number.isInteger(override) && override > 0
        ? { limit: override, windowMs: MINUTE_MS }
        : perPrincipal;
    if (principalLimit) {
      let cost = 0;
      for (const m of messages) if (m.type !== "response") cost++;
      buckets.push({
        key: `rl:p:${identity.principal}`,
        limit: principalLimit.limit,
        windowMs: principalLimit.windowMs,
        policy: "principal",
        cost: Math.max(1, cost),
      });
    }
    if (tools.length > 0) {
      const costs = new Map<number, number>();
      for (const m of messages) {
        if (m.type !== "request" || m.method !== "tools/call" || m.name === undefined) continue;
        const i = tools.findIndex((t) => t.test(m.name!));
        if (i !== -1) costs.set(i, (costs.get(i) ?? 0) + 1);
      }
      for (const [i, cost] of costs) {
        const t = tools[i]!;
        buckets.push({
          key: `rl:t:${t.keyPart}:${identity.principal}`,
          limit: t.limit,
          windowMs: t.windowMs,
          policy: t.policy,
          cost,
        });
      }
    }
    return buckets;
  }

  return Object.freeze({ bucketsFor, failOpen: input.failOpen === true });
}
