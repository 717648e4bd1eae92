import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { inspectParsedJsonRpc, MAX_BATCH, MAX_JSON_DEPTH, parseJsonRpc } from "../../src/mcp/jsonrpc.js";

/** Ids a client might send, legal or not: odd strings, huge/tiny numbers, floats, objects. */
const oddId = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }),
  fc.constantFrom(null, true, false, [], {}, "", "__proto__", "constructor", -0, 1e308, 5e-324),
);
const legalId = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constant(null),
);
const methodName = fc.oneof(
  fc.constantFrom("initialize", "ping", "tools/list", "tools/call", "resources/read", "prompts/get"),
  fc.constantFrom("notifications/initialized", "resources/subscribe", "server/discover"),
  fc.string({ minLength: 1, maxLength: 30 }),
);

/** A JSON-RPC request or notification that must be accepted, with what the inspector must report. */
const validMessage = fc
  .record({
    id: fc.option(legalId, { nil: undefined }),
    method: methodName,
    name: fc.string({ maxLength: 30 }),
    extra: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 3 }),
  })
  .map(({ id, method, name, extra }) => {
    const params: Record<string, unknown> = { ...extra };
    if (method === "tools/call" || method === "prompts/get") params.name = name;
    if (method.startsWith("resources/") && method !== "resources/list") params.uri = name;
    const msg: Record<string, unknown> = { jsonrpc: "2.0", method, params };
    if (id !== undefined) msg.id = id;
    return msg;
  });

/** Serialise a value with bigints written as raw JSON numbers (JSON.stringify cannot). */
function toJson(v: unknown): string {
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return `[${v.map(toJson).join(",")}]`;
  if (v && typeof v === "object")
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`)
      .join(",")}}`;
  return JSON.stringify(v) ?? "null";
}

function nested(depth: number, open: string, close: string, inner = "1"): string {
  return open.repeat(depth) + inner + close.repeat(depth);
}

describe("parseJsonRpc under fuzzing", () => {
  it("never throws on arbitrary text and always answers ok or a parse/invalid-request refusal", () => {
    const text = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.json({ maxDepth: 4 }),
      fc.string({ unit: fc.constantFrom(...'[]{}",:\\0123456789.eE-+ ntrufalse'.split("")), maxLength: 200 }),
    );
    fc.assert(
      fc.property(text, (t) => {
        const r = parseJsonRpc(t);
        if (!r.ok) expect(["parse_error", "invalid_request"]).toContain(r.kind);
        else expect(r.messages.length).toBeGreaterThan(0);
      }),
      { numRuns: 2000 },
    );
  });

  it("accepts every well-formed message and batch, reporting each method, id and name as sent", () => {
    fc.assert(
      fc.property(fc.oneof(validMessage, fc.array(validMessage, { minLength: 1, maxLength: 8 })), (body) => {
        const r = parseJsonRpc(JSON.stringify(body));
        expect(r.ok).toBe(true);
        if (!r.ok) return;
        const sent = Array.isArray(body) ? body : [body];
        expect(r.batch).toBe(Array.isArray(body));
        expect(r.messages).toHaveLength(sent.length);
        r.messages.forEach((m, i) => {
          const s = sent[i]!;
          // Compare through JSON: that is what the upstream will see (-0 and 0 are one id on the wire).
          expect(JSON.stringify(m.raw)).toBe(JSON.stringify(s));
          expect(m.method).toBe(s.method);
          expect(m.type).toBe(Object.hasOwn(s, "id") ? "request" : "notification");
          if (m.type === "request") expect(JSON.stringify(m.id)).toBe(JSON.stringify(s.id));
          const p = s.params as Record<string, unknown>;
          if (s.method === "tools/call" || s.method === "prompts/get") expect(m.name).toBe(p.name);
        });
      }),
      { numRuns: 500 },
    );
  });

  it("accepts a message only when its id is a string, a finite number or null", () => {
    fc.assert(
      fc.property(oddId, methodName, (id, method) => {
        const text = toJson({ jsonrpc: "2.0", id, method, params: { name: "t", uri: "u" } });
        const r = parseJsonRpc(text);
        const parsedId = JSON.parse(text).id;
        const legal =
          typeof parsedId === "string" ||
          parsedId === null ||
          (typeof parsedId === "number" && Number.isFinite(parsedId));
        expect(r.ok).toBe(legal);
        if (r.ok) expect(JSON.stringify(r.messages[0]!.id)).toBe(JSON.stringify(parsedId));
      }),
      { numRuns: 1000 },
    );
  });

  it("refuses numbers too large for a double as ids (1e400 is Infinity, not an id)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 309, max: 100_000 }), fc.boolean(), (exp, neg) => {
        const r = parseJsonRpc(`{"jsonrpc":"2.0","id":${neg ? "-" : ""}1e${exp},"method":"ping"}`);
        expect(r).toMatchObject({ ok: false, kind: "invalid_request" });
      }),
      { numRuns: 100 },
    );
  });

  it("refuses nesting deeper than MAX_JSON_DEPTH before parsing, and accepts it up to the limit", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200_000 }),
        fc.constantFrom(["[", "]"], ['{"a":', "}"]),
        fc.boolean(),
        (depth, [open, close], inString) => {
          // Brackets inside a string do not nest: the pre-scan must skip strings (and escaped quotes).
          const inner = inString ? JSON.stringify(`\\"${"[".repeat(depth % 500)}`) : "1";
          const payload = nested(Math.min(depth, 1_000_000), open!, close!, inner);
          const body = `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":${payload}}}`;
          const r = parseJsonRpc(body);
          // params itself and the outer object are two levels.
          if (depth + 2 > MAX_JSON_DEPTH) expect(r).toMatchObject({ ok: false, kind: "parse_error" });
          else expect(r.ok).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("refuses a deep unterminated prefix quickly without a stack overflow", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 65, max: 2_000_000 }),
        fc.constantFrom("[", '{"a":', '[{"b":'),
        (n, unit) => {
          const started = performance.now();
          const r = parseJsonRpc(unit.repeat(Math.ceil(n / unit.length)));
          expect(r.ok).toBe(false);
          expect(performance.now() - started).toBeLessThan(1000);
        },
      ),
      { numRuns: 20 },
    );
  });

  it("refuses empty batches, batches over MAX_BATCH, and batches with one bad element", () => {
    fc.assert(
      fc.property(
        fc.array(validMessage, { minLength: 1, maxLength: 5 }),
        fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant<unknown>({ jsonrpc: "1.0", id: 1, method: "x" })),
        fc.nat(),
        (msgs, bad, at) => {
          expect(parseJsonRpc("[]")).toMatchObject({ ok: false, kind: "invalid_request" });
          const big = Array.from({ length: MAX_BATCH + 1 }, () => msgs[0]);
          expect(parseJsonRpc(JSON.stringify(big))).toMatchObject({ ok: false, kind: "invalid_request" });
          const withBad: unknown[] = [...msgs];
          withBad.splice(at % (msgs.length + 1), 0, bad);
          const r = parseJsonRpc(JSON.stringify(withBad));
          // A random JSON value can be a valid response or message by chance; anything else is refused.
          const b = bad as Record<string, unknown> | null;
          const maybeValid = b !== null && typeof b === "object" && !Array.isArray(b) && b.jsonrpc === "2.0";
          if (!maybeValid) expect(r.ok).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("inspectParsedJsonRpc (a body express.json() already parsed)", () => {
  it("decides every JSON text exactly as parseJsonRpc does, without re-serialising", () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 6 }), (text) => {
        const fromText = parseJsonRpc(text);
        const fromValue = inspectParsedJsonRpc(JSON.parse(text));
        expect(fromValue.ok).toBe(fromText.ok);
        if (fromText.ok && fromValue.ok) {
          expect(fromValue.messages.map((m) => [m.type, m.method, m.id, m.name])).toEqual(
            fromText.messages.map((m) => [m.type, m.method, m.id, m.name]),
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  it("refuses a parsed value nested deeper than MAX_JSON_DEPTH, even 100 000 levels deep, without recursion", () => {
    const nest = (n: number) => {
      let v: unknown = 1;
      for (let i = 0; i < n; i++) v = [v];
      return { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "x", arguments: { a: v } } };
    };
    expect(inspectParsedJsonRpc(nest(MAX_JSON_DEPTH - 4)).ok).toBe(true);
    const deep = inspectParsedJsonRpc(nest(100_000));
    expect(deep).toMatchObject({ ok: false, kind: "parse_error" });
  });
});
