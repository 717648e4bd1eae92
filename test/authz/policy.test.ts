import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileGlob, compilePolicy, governedItem, scopeCovers } from "../../src/authz/policy.js";
import type { Identity } from "../../src/core/identity.js";
import { parseJsonRpc } from "../../src/mcp/jsonrpc.js";

const id = (scopes: string[], kind: Identity["kind"] = "api_key"): Identity => ({
  principal: `key:${scopes.join("_") || "none"}`,
  kind,
  subject: "s",
  scopes,
});

function msg(body: unknown) {
  const r = parseJsonRpc(JSON.stringify(body));
  if (!r.ok) throw new Error(r.message);
  return r.messages[0]!;
}
const call = (name: string) => msg({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name } });

describe("compileGlob", () => {
  it("matches * and ? anchored at both ends, and nothing else as a pattern", () => {
    const g = compileGlob("delete_*");
    expect(g("delete_note")).toBe(true);
    expect(g("delete_")).toBe(true);
    expect(g("xdelete_note")).toBe(false);
    expect(compileGlob("a?c")("abc")).toBe(true);
    expect(compileGlob("a?c")("ac")).toBe(false);
    expect(compileGlob("a.c")("abc")).toBe(false);
    expect(compileGlob("a+")("aa")).toBe(false);
    expect(compileGlob("(x)|y")("y")).toBe(false);
    expect(compileGlob("(x)|y")("(x)|y")).toBe(true);
  });

  it("is case-sensitive and applies no Unicode normalization", () => {
    const g = compileGlob("admin_*");
    expect(g("Admin_x")).toBe(false);
    expect(g("ADMIN_X")).toBe(false);
    // Cyrillic а (U+0430) looks like Latin a.
    expect(g("\u0430dmin_x")).toBe(false);
    // é precomposed vs e + combining acute.
    expect(compileGlob("caf\u00e9")("cafe\u0301")).toBe(false);
    // Fullwidth letters.
    expect(g("\uff41dmin_x")).toBe(false);
  });

  it("treats / and other path-like characters as literals that * may span", () => {
    expect(compileGlob("files/*")("files/a/b")).toBe(true);
    expect(compileGlob("files/*")("files\\a")).toBe(false);
    expect(compileGlob("file:///home/*")("file:///home/u/.ssh/id_rsa")).toBe(true);
    expect(compileGlob("file:///home/*")("file:///etc/passwd")).toBe(false);
    expect(compileGlob("../*")("../x")).toBe(true);
    expect(compileGlob("../*")("..x")).toBe(false);
  });

  it("lets ? consume one code point, including an astral one", () => {
    expect(compileGlob("a?b")("a😀b")).toBe(true);
    expect(compileGlob("a??b")("a😀b")).toBe(false);
  });

  it("agrees with a reference matcher on random names (property)", () => {
    const ref = (glob: string, name: string): boolean => {
      // Plain recursive matcher over code points.
      const g = [...glob];
      const n = [...name];
      const memo = new Map<string, boolean>();
      const go = (i: number, j: number): boolean => {
        const k = `${i},${j}`;
        if (memo.has(k)) return memo.get(k)!;
        let r: boolean;
        if (i === g.length) r = j === n.length;
        else if (g[i] === "*") r = go(i + 1, j) || (j < n.length && go(i, j + 1));
        else if (g[i] === "?") r = j < n.length && go(i + 1, j + 1);
        else r = j < n.length && g[i] === n[j] && go(i + 1, j + 1);
        memo.set(k, r);
        return r;
      };
      return go(0, 0);
    };
    const alphabet = fc.constantFrom("a", "b", "A", "/", ".", "*", "?", "\u0430", "😀", "[", "\\");
    fc.assert(
      fc.property(
        fc.array(alphabet, { minLength: 1, maxLength: 6 }),
        fc.array(
          alphabet.filter((c) => c !== "*" && c !== "?"),
          { maxLength: 8 },
        ),
        (gs, ns) => {
          const glob = gs.join("");
          const name = ns.join("");
          expect(compileGlob(glob)(name)).toBe(ref(glob, name));
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("scopeCovers", () => {
  it("implements the documented hierarchy", () => {
    expect(scopeCovers("tools:call", "tools:call")).toBe(true);
    expect(scopeCovers("tools:*", "tools:call")).toBe(true);
    expect(scopeCovers("tools:*", "tools:admin:x")).toBe(true);
    expect(scopeCovers("tools:*", "tools")).toBe(false);
    expect(scopeCovers("tools:*", "toolsx:call")).toBe(false);
    expect(scopeCovers("*", "admin")).toBe(true);
    expect(scopeCovers("tools", "tools:call")).toBe(false);
    expect(scopeCovers("tools:call", "tools:*")).toBe(false);
    expect(scopeCovers("Tools:call", "tools:call")).toBe(false);
  });
});

describe("compilePolicy", () => {
  const policy = compilePolicy({
    tools: [
      { match: "delete_*", scopes: ["admin"] },
      { match: "report_?", scopes: ["reports:read", "reports:export"], mode: "any" },
      { match: "public_*", scopes: [] },
      { match: "*", scopes: ["tools:call"] },
    ],
    resources: [{ match: "file:///public/*", scopes: ["files:read"] }],
    prompts: [{ match: "summarize", scopes: ["prompts:use"] }],
  });

  it("takes the first matching rule", () => {
    expect(policy.evaluate("tools", "delete_note", ["tools:call"]).allow).toBe(false);
    expect(policy.evaluate("tools", "delete_note", ["admin"]).allow).toBe(true);
    expect(policy.evaluate("tools", "delete_note", ["admin"]).rule?.index).toBe(0);
    expect(policy.evaluate("tools", "echo", ["tools:call"]).rule?.index).toBe(3);
  });

  it("requires all scopes by default and one of them with mode any", () => {
    expect(policy.evaluate("tools", "report_a", ["reports:export"]).allow).toBe(true);
    expect(policy.evaluate("tools", "report_a", []).missing).toEqual(["reports:read", "reports:export"]);
    const all = compilePolicy({ tools: [{ match: "x", scopes: ["a", "b"] }] });
    expect(all.evaluate("tools", "x", ["a"]).missing).toEqual(["b"]);
    expect(all.evaluate("tools", "x", ["a", "b"]).allow).toBe(true);
  });

  it("allows a rule with no scopes for every authenticated caller", () => {
    expect(policy.evaluate("tools", "public_info", []).allow).toBe(true);
  });

  it("denies what no rule matches unless the default is allow", () => {
    expect(policy.evaluate("resources", "file:///etc/passwd", ["*"]).allow).toBe(false);
    expect(policy.evaluate("resources", "file:///etc/passwd", ["*"]).rule).toBeUndefined();
    const open = compilePolicy({ default: "allow", tools: [{ match: "delete_*", scopes: ["admin"] }] });
    expect(open.evaluate("tools", "echo", []).allow).toBe(true);
    expect(open.evaluate("resources", "file:///x", []).allow).toBe(true);
    expect(open.evaluate("tools", "delete_x", []).allow).toBe(false);
  });

  it("does not filter lists when there are no rules and the default is allow", () => {
    expect(compilePolicy({ default: "allow" }).filtersLists(id([]))).toBe(false);
    expect(compilePolicy({}).filtersLists(id([]))).toBe(true);
    expect(policy.filtersLists(id([]))).toBe(true);
  });

  it("governs tools/call, resources/read|subscribe, prompts/get and completion refs; allows the rest", () => {
    expect(governedItem(call("x"))).toEqual({ kind: "tools", name: "x" });
    expect(
      governedItem(msg({ jsonrpc: "2.0", id: 1, method: "resources/read", params: { uri: "file:///a" } })),
    ).toEqual({ kind: "resources", name: "file:///a" });
    expect(
      governedItem(msg({ jsonrpc: "2.0", id: 1, method: "resources/subscribe", params: { uri: "u" } })),
    ).toEqual({ kind: "resources", name: "u" });
    expect(
      governedItem(msg({ jsonrpc: "2.0", id: 1, method: "prompts/get", params: { name: "p" } })),
    ).toEqual({
      kind: "prompts",
      name: "p",
    });
    expect(
      governedItem(
        msg({
          jsonrpc: "2.0",
          id: 1,
          method: "completion/complete",
          params: { ref: { type: "ref/prompt", name: "summarize" }, argument: { name: "a", value: "" } },
        }),
      ),
    ).toEqual({ kind: "prompts", name: "summarize" });
    for (const method of [
      "initialize",
      "ping",
      "tools/list",
      "resources/list",
      "prompts/list",
      "logging/setLevel",
    ]) {
      expect(governedItem(msg({ jsonrpc: "2.0", id: 1, method }))).toBeUndefined();
      expect(policy.authorize(id([]), msg({ jsonrpc: "2.0", id: 1, method })).allow).toBe(true);
    }
    expect(policy.authorize(id([]), msg({ jsonrpc: "2.0", method: "notifications/initialized" })).allow).toBe(
      true,
    );
    expect(policy.authorize(id([]), msg({ jsonrpc: "2.0", id: 5, result: {} })).allow).toBe(true);
  });

  it("names the tool and the missing scopes in the denial, and asks step-up for all required scopes", () => {
    const d = policy.authorize(id(["tools:call"]), call("delete_note"));
    expect(d).toEqual({
      allow: false,
      scopes: ["admin"],
      reason: 'Forbidden: tool "delete_note" requires the scope: admin',
    });
    const any = policy.authorize(id([]), call("report_a"));
    expect(any.allow).toBe(false);
    if (!any.allow) {
      expect(any.scopes).toEqual(["reports:read"]);
      expect(any.reason).toContain("one of the scopes: reports:read, reports:export");
    }
    const dflt = compilePolicy({ tools: [{ match: "a", scopes: ["x"] }] }).authorize(id(["x"]), call("b"));
    expect(dflt).toEqual({
      allow: false,
      scopes: [],
      reason: 'Forbidden: tool "b" is not allowed by the gateway policy',
    });
  });

  it("keeps control characters and very long names out of the denial text", () => {
    const d = policy.authorize(id([]), call(`delete_\u0000\n${"x".repeat(500)}`));
    expect(d.allow).toBe(false);
    if (!d.allow) {
      expect(d.reason.includes("\u0000") || d.reason.includes("\n")).toBe(false);
      expect(d.reason.length).toBeLessThan(250);
    }
  });

  it("answers onDenied auto with step-up for OAuth and a tool error for keys", () => {
    expect(policy.onDenied(id([], "oauth2"))).toBe("step-up");
    expect(policy.onDenied(id([], "api_key"))).toBe("tool-error");
    expect(policy.onDenied(id([], "static_key"))).toBe("tool-error");
    expect(compilePolicy({ onDenied: "step-up" }).onDenied(id([]))).toBe("step-up");
    expect(compilePolicy({ onDenied: "tool-error" }).onDenied(id([], "oauth2"))).toBe("tool-error");
  });

  it("asks the least for a first login: the catch-all rules' scopes, or auth.challengeScopes (issue 14 item 7)", () => {
    const p = compilePolicy({
      tools: [
        { match: "delete_*", scopes: ["admin"] },
        { match: "*", scopes: ["tools:call"] },
      ],
      resources: [{ match: "*", scopes: ["files:read", "files:list"], mode: "any" }],
      prompts: [{ match: "summarize", scopes: ["prompts:use"] }],
    });
    expect(p.challengeScopes()).toEqual(["tools:call", "files:read"]);
    expect(p.scopesSupported()).toContain("admin");
    expect(p.challengeScopes()).not.toContain("admin");
    expect(compilePolicy({ tools: [{ match: "a", scopes: ["x"] }] }).challengeScopes()).toEqual([]);
    expect(
      compilePolicy({
        tools: [{ match: "*", scopes: ["x"] }],
        challengeScopes: ["openid", "x"],
      }).challengeScopes(),
    ).toEqual(["openid", "x"]);
  });

  it("names no scope when none would allow the call (no step-up a client cannot satisfy)", () => {
    const toolsOnly = compilePolicy({ tools: [{ match: "*", scopes: ["tools:call"] }] });
    const read = msg({ jsonrpc: "2.0", id: 1, method: "resources/read", params: { uri: "file:///x" } });
    expect(toolsOnly.authorize(id(["tools:call"], "oauth2"), read)).toMatchObject({
      allow: false,
      scopes: [],
    });
    const malformed = msg({ jsonrpc: "2.0", id: 2, method: "resources/read", params: { uri: "no uri" } });
    expect(toolsOnly.authorize(id([], "oauth2"), malformed)).toMatchObject({ allow: false, scopes: [] });
  });

  it("advertises the union of the rules' scopes", () => {
    expect(policy.scopesSupported()).toEqual([
      "admin",
      "reports:read",
      "reports:export",
      "tools:call",
      "files:read",
      "prompts:use",
    ]);
  });

  it("shows exactly what it lets call (isVisible agrees with authorize, property)", () => {
    const names = fc.constantFrom(
      "delete_note",
      "report_a",
      "report_ab",
      "public_x",
      "echo",
      "Delete_note",
      "",
    );
    const scopes = fc.subarray(["admin", "tools:call", "tools:*", "*", "reports:read", "x"]);
    fc.assert(
      fc.property(names, scopes, (name, granted) => {
        const who = id(granted);
        expect(policy.isVisible(who, "tools", name)).toBe(policy.authorize(who, call(name)).allow);
      }),
      { numRuns: 500 },
    );
  });

  it("refuses malformed rules at construction", () => {
    expect(() => compilePolicy({ tools: [{ match: "" }] })).toThrow(/match/);
    expect(() => compilePolicy({ tools: [{ match: "x", mode: "some" as "all" }] })).toThrow(/mode/);
    expect(() => compilePolicy({ tools: [{ match: "x", scopes: ["a b"] }] })).toThrow(/scope/);
    expect(() => compilePolicy({ default: "maybe" as "allow" })).toThrow(/default/);
  });
});
