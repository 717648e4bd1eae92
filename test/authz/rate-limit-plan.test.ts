import { describe, expect, it } from "vitest";
import { createRateLimitPlanner } from "../../src/authz/rate-limit-plan.js";
import type { Identity } from "../../src/core/identity.js";
import { parseJsonRpc } from "../../src/mcp/jsonrpc.js";

const key: Identity = { principal: "key:7Hq2xK9a", kind: "api_key", subject: "7Hq2xK9a", scopes: [] };
const messages = (body: unknown) => {
  const r = parseJsonRpc(JSON.stringify(body));
  if (!r.ok) throw new Error(r.message);
  return r.messages;
};
const call = (id: number, name: string) => ({ jsonrpc: "2.0", id, method: "tools/call", params: { name } });

describe("createRateLimitPlanner", () => {
  const planner = createRateLimitPlanner({
    perPrincipal: { limit: 600, windowMs: 60_000 },
    tools: [
      { match: "expensive_*", limit: 10, windowMs: 60_000 },
      { match: "*", limit: 100, windowMs: 1000 },
    ],
  });

  it("puts every request in the principal's bucket, keyed by principal", () => {
    expect(planner.bucketsFor(key, messages({ jsonrpc: "2.0", id: 1, method: "ping" }))).toEqual([
      { key: "rl:p:key:7Hq2xK9a", limit: 600, windowMs: 60_000, policy: "principal", cost: 1 },
    ]);
    // A GET or DELETE has no messages and still costs one.
    expect(planner.bucketsFor(key, [])[0]?.cost).toBe(1);
  });

  it("charges a batch one unit per message, so batching cannot bypass a limit", () => {
    const b = planner.bucketsFor(
      key,
      messages([
        call(1, "expensive_a"),
        call(2, "expensive_b"),
        call(3, "echo"),
        { jsonrpc: "2.0", method: "n" },
      ]),
    );
    expect(b).toEqual([
      { key: "rl:p:key:7Hq2xK9a", limit: 600, windowMs: 60_000, policy: "principal", cost: 4 },
      {
        key: "rl:t:expensive_*:key:7Hq2xK9a",
        limit: 10,
        windowMs: 60_000,
        policy: "tool:expensive_*",
        cost: 2,
      },
      { key: "rl:t:*:key:7Hq2xK9a", limit: 100, windowMs: 1000, policy: "tool:*", cost: 1 },
    ]);
  });

  it("applies the first matching tool entry only", () => {
    const b = planner.bucketsFor(key, messages(call(1, "expensive_a")));
    expect(b.map((x) => x.policy)).toEqual(["principal", "tool:expensive_*"]);
  });

  it("uses a key's perMinute override instead of the configured principal limit", () => {
    const b = planner.bucketsFor({ ...key, limits: { perMinute: 5 } }, []);
    expect(b).toEqual([
      { key: "rl:p:key:7Hq2xK9a", limit: 5, windowMs: 60_000, policy: "principal", cost: 1 },
    ]);
    // The override applies even with no configured principal limit.
    expect(createRateLimitPlanner({}).bucketsFor({ ...key, limits: { perMinute: 3 } }, [])[0]?.limit).toBe(3);
    expect(createRateLimitPlanner({}).bucketsFor(key, [])).toEqual([]);
  });

  it("never puts a credential in a key and keeps glob and principal apart", () => {
    const oauth: Identity = {
      principal: "oauth:https://as.example#a:b",
      kind: "oauth2",
      subject: "a:b",
      scopes: [],
    };
    const p = createRateLimitPlanner({ tools: [{ match: "x:y", limit: 1, windowMs: 1000 }] });
    const [b] = p.bucketsFor(oauth, messages(call(1, "x:y")));
    expect(b?.key).toBe("rl:t:x%3Ay:oauth:https://as.example#a:b");
  });

  it("makes policy names safe for a structured-field string", () => {
    const p = createRateLimitPlanner({ tools: [{ match: 'a"b\\c é', limit: 1, windowMs: 1000 }] });
    const [b] = p.bucketsFor(key, messages(call(1, 'a"b\\c é')));
    expect(b?.policy).toBe("tool:a_b_c__");
  });

  it("refuses bad limits at construction", () => {
    expect(() => createRateLimitPlanner({ perPrincipal: { limit: 0, windowMs: 1000 } })).toThrow(/limit/);
    expect(() => createRateLimitPlanner({ tools: [{ match: "x", limit: 1, windowMs: 10 }] })).toThrow(
      /window/,
    );
    expect(createRateLimitPlanner({ failOpen: true }).failOpen).toBe(true);
    expect(createRateLimitPlanner({}).failOpen).toBe(false);
  });
});
