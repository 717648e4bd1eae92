import { describe, expect, it } from "vitest";
import { ANY_LIST, filterListResponse, listRequestIds } from "../../src/mcp/list-filter.js";
import { createSseRewriter, type RewritePlan, rewriteJsonBody } from "../../src/mcp/response-rewriter.js";

const visible = (_kind: string, name: string) => !name.startsWith("secret");
const tools = (...names: string[]) => names.map((name) => ({ name, inputSchema: { type: "object" } }));
const listReq = (id: number | string, method = "tools/list") => ({ type: "request", id, method });

function plan(
  messages: Array<{ type: string; id?: number | string; method?: string }>,
  era: "2025" | "2026" = "2025",
  any = false,
): RewritePlan {
  return { listIds: listRequestIds(messages, any), visible, era, localResponses: [] };
}

function sseEvents(text: string): unknown[] {
  return text
    .split("\n\n")
    .filter((e) => e.includes("data:"))
    .map((e) =>
      JSON.parse(
        e
          .split("\n")
          .filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trimStart())
          .join("\n"),
      ),
    );
}

describe("filterListResponse", () => {
  it("drops hidden items from every list kind and keeps the cursor of the page", () => {
    const page = { jsonrpc: "2.0", id: 1, result: { tools: tools("a", "secret_b"), nextCursor: "p2" } };
    expect(filterListResponse(page, "tools/list", visible, "2025")).toEqual({
      jsonrpc: "2.0",
      id: 1,
      result: { tools: tools("a"), nextCursor: "p2" },
    });
    const res = {
      jsonrpc: "2.0",
      id: 2,
      result: { resources: [{ uri: "notes://a" }, { uri: "secret://b" }] },
    };
    expect(
      (filterListResponse(res, "resources/list", visible, "2025").result as { resources: unknown[] })
        .resources,
    ).toEqual([{ uri: "notes://a" }]);
    const tpl = { jsonrpc: "2.0", id: 3, result: { resourceTemplates: [{ uriTemplate: "secret://{x}" }] } };
    expect(
      (
        filterListResponse(tpl, "resources/templates/list", visible, "2025").result as {
          resourceTemplates: unknown[];
        }
      ).resourceTemplates,
    ).toEqual([]);
    const prompts = { jsonrpc: "2.0", id: 4, result: { prompts: [{ name: "secret_p" }, { name: "p" }] } };
    expect(
      (filterListResponse(prompts, "prompts/list", visible, "2025").result as { prompts: unknown[] }).prompts,
    ).toEqual([{ name: "p" }]);
  });

  it("drops items it cannot name (fail closed)", () => {
    const page = {
      jsonrpc: "2.0",
      id: 1,
      result: { tools: [{ name: 5 }, null, "x", { title: "no name" }, { name: "a" }] },
    };
    expect(
      (filterListResponse(page, "tools/list", visible, "2025").result as { tools: unknown[] }).tools,
    ).toEqual([{ name: "a" }]);
  });

  it("marks a filtered 2026 list private, and a public one private even when nothing was dropped", () => {
    const page = {
      jsonrpc: "2.0",
      id: 1,
      result: { tools: tools("a", "secret"), ttlMs: 1000, cacheScope: "public" },
    };
    expect(filterListResponse(page, "tools/list", visible, "2026").result).toEqual({
      tools: tools("a"),
      ttlMs: 1000,
      cacheScope: "private",
    });
    const unchanged = { jsonrpc: "2.0", id: 1, result: { tools: tools("a"), cacheScope: "public" } };
    expect(
      (filterListResponse(unchanged, "tools/list", visible, "2026").result as { cacheScope: string })
        .cacheScope,
    ).toBe("private");
    // 2025 results carry no cacheScope.
    expect(filterListResponse(page, "tools/list", visible, "2025").result).not.toHaveProperty(
      "cacheScope",
      "private",
    );
  });

  it("returns the same object when nothing changes (no re-serialisation)", () => {
    const page = { jsonrpc: "2.0", id: 1, result: { tools: tools("a") } };
    expect(filterListResponse(page, "tools/list", visible, "2025")).toBe(page);
    const error = { jsonrpc: "2.0", id: 1, error: { code: -1, message: "x" } };
    expect(filterListResponse(error, "tools/list", visible, "2025")).toBe(error);
  });
});

describe("listRequestIds", () => {
  it("maps ids shared by two requests to every list kind, so neither answer escapes", () => {
    const ids = listRequestIds([listReq(1, "prompts/list"), listReq(1, "tools/list")]);
    expect(ids.get("1")).toBe(ANY_LIST);
    const r = rewriteJsonBody(
      JSON.stringify([
        { jsonrpc: "2.0", id: 1, result: { tools: tools("secret_t", "a") } },
        { jsonrpc: "2.0", id: 1, result: { prompts: [{ name: "secret_p" }] } },
      ]),
      { listIds: ids, visible, era: "2025", localResponses: [] },
    );
    expect(r.ok && r.body).not.toContain("secret");
    // A list id shared with a non-list request is also treated as any list.
    expect(listRequestIds([listReq(2), { type: "request", id: 2, method: "tools/call" }]).get("2")).toBe(
      ANY_LIST,
    );
  });

  it("treats every response on a GET stream as a possible list (resumed streams replay them)", () => {
    const rw = createSseRewriter(plan([], "2025", true));
    const out = rw.push(
      `id: 5\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: 99, result: { tools: tools("secret", "a") } })}\n\n`,
    );
    expect(sseEvents(out)).toEqual([{ jsonrpc: "2.0", id: 99, result: { tools: tools("a") } }]);
    expect(out.startsWith("id: 5\n")).toBe(true);
  });

  it('distinguishes the string id "1" from the number 1', () => {
    const ids = listRequestIds([listReq("1")]);
    expect(ids.has('"1"')).toBe(true);
    expect(ids.has("1")).toBe(false);
  });
});

describe("JSON and SSE rewriting", () => {
  const body = {
    jsonrpc: "2.0",
    id: 7,
    result: { tools: tools("a", "secret_é", "b", "秘密", "secret_😀"), nextCursor: "c" },
  };

  it("filters a JSON body and a batch body", () => {
    const r = rewriteJsonBody(JSON.stringify(body), plan([listReq(7)]));
    expect(r.ok && JSON.parse(r.body).result.tools.map((t: { name: string }) => t.name)).toEqual([
      "a",
      "b",
      "秘密",
    ]);
    const batch = rewriteJsonBody(
      JSON.stringify([body, { jsonrpc: "2.0", id: 8, result: {} }]),
      plan([listReq(7)]),
    );
    expect(batch.ok && batch.body).not.toContain("secret");
  });

  it("refuses an unparseable body rather than pass a list through", () => {
    expect(rewriteJsonBody("{not json", plan([listReq(7)]))).toEqual({ ok: false });
  });

  it("filters an SSE list however the stream is cut, in strings or in bytes", () => {
    const stream = `: comment\n\nevent: message\nid: 1\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/progress", params: {} })}\n\nevent: message\nid: 2\ndata: ${JSON.stringify(body)}\r\n\r\n`;
    const bytes = Buffer.from(stream, "utf8");
    for (let cut = 1; cut < bytes.length; cut += 7) {
      for (const asBytes of [true, false]) {
        const rw = createSseRewriter(plan([listReq(7)]));
        const a = asBytes ? bytes.subarray(0, cut) : bytes.subarray(0, cut).toString("utf8");
        const b = asBytes ? bytes.subarray(cut) : bytes.subarray(cut).toString("utf8");
        // Cutting a string inside a multi-byte character is not possible; only bytes are cut there.
        if (!asBytes && Buffer.from(a as string).length !== cut) continue;
        const out = rw.push(a) + rw.push(b) + rw.end();
        const events = sseEvents(out);
        expect(events).toHaveLength(2);
        expect((events[1] as typeof body).result.tools.map((t) => t.name)).toEqual(["a", "b", "秘密"]);
        expect(out).toContain("id: 2\nevent: message\n");
        expect(out).not.toContain("secret");
      }
    }
  });

  it("filters an SSE list whose JSON spans several data lines", () => {
    const json = JSON.stringify(body, null, 1);
    const ev = `${json
      .split("\n")
      .map((l) => `data: ${l}`)
      .join("\n")}\n\n`;
    const rw = createSseRewriter(plan([listReq(7)]));
    const out = rw.push(ev) + rw.end();
    expect(out).not.toContain("secret");
    expect(sseEvents(out)).toHaveLength(1);
  });

  it("drops an unterminated last event instead of passing it unfiltered", () => {
    const rw = createSseRewriter(plan([listReq(7)]));
    const out = rw.push(`data: ${JSON.stringify(body)}`) + rw.end();
    expect(out).toBe("");
  });

  it("passes events that are not list responses byte for byte", () => {
    const raw = `event: message\nid: 3\ndata: {"jsonrpc":"2.0","id":8,"result":{"content":[]}}\n\n`;
    const rw = createSseRewriter(plan([listReq(7)]));
    expect(rw.push(raw)).toBe(raw);
  });

  it("filters every page of a paginated list", () => {
    const pages = [
      { tools: tools("a", "secret1"), nextCursor: "2" },
      { tools: tools("secret2"), nextCursor: "3" },
      { tools: tools("b") },
    ];
    const seen: string[] = [];
    pages.forEach((result, i) => {
      const r = rewriteJsonBody(JSON.stringify({ jsonrpc: "2.0", id: i, result }), plan([listReq(i)]));
      if (!r.ok) throw new Error("rewrite failed");
      const out = JSON.parse(r.body).result;
      expect(out.nextCursor).toBe(result.nextCursor);
      seen.push(...out.tools.map((t: { name: string }) => t.name));
    });
    expect(seen).toEqual(["a", "b"]);
  });
});
