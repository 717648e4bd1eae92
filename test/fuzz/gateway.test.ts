import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import fc from "fast-check";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CannedUpstream, startCannedUpstream } from "../helpers/canned-upstream.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

const KEY = `fuzz-${randomBytes(24).toString("hex")}`;

/** What a well-formed JSON-RPC body is, written independently of src/mcp/jsonrpc.ts. */
function isWellFormedJsonRpc(body: string): boolean {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return false;
  }
  const items = Array.isArray(v) ? v : [v];
  if (items.length === 0) return false;
  return items.every((m) => {
    if (!m || typeof m !== "object" || Array.isArray(m) || m.jsonrpc !== "2.0") return false;
    if (typeof m.method === "string") return true;
    return "id" in m && ("result" in m || "error" in m);
  });
}

/** True when `value` is exactly one Authorization header carrying KEY with the Bearer scheme. */
function carriesKey(value: string | string[] | undefined): boolean {
  // RFC 9110 §5.5: leading and trailing whitespace is not part of a field value.
  const v = typeof value === "string" ? value.replace(/^[ \t]+|[ \t]+$/g, "") : undefined;
  return v !== undefined && /^bearer /i.test(v) && v.slice(7) === KEY;
}

const headerText = fc.string({
  unit: fc.constantFrom(..."abcXYZ019 -_.~+/=,;:\"'()[]{}<>?@!#$%^&*|`\t".split("")),
  maxLength: 40,
});
const authorization = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom(`Bearer ${KEY}`, `bearer ${KEY}`, `BEARER ${KEY}`),
  fc.constantFrom(
    `Bearer  ${KEY}`,
    `Bearer ${KEY} `,
    `Basic ${KEY}`,
    `Bearer ${KEY}x`,
    `Bearer ${KEY.slice(0, -1)}`,
  ),
  fc.constant<string[]>([`Bearer ${KEY}`, `Bearer ${KEY}`]),
  headerText,
  headerText.map((t) => `Bearer ${t}`),
);
const rpc = fc.record(
  {
    jsonrpc: fc.constantFrom("2.0", "2.0", "1.0", 2),
    id: fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.constant(null), fc.double(), fc.constant({})),
    method: fc.oneof(
      fc.constantFrom(
        "initialize",
        "tools/list",
        "tools/call",
        "ping",
        "resources/read",
        "notifications/initialized",
      ),
      fc.string({ maxLength: 10 }),
      fc.integer(),
    ),
    params: fc.oneof(
      fc.record({ name: fc.string({ maxLength: 8 }), arguments: fc.jsonValue({ maxDepth: 2 }) }),
      fc.jsonValue({ maxDepth: 2 }),
    ),
  },
  { requiredKeys: ["jsonrpc"] },
);
const body = fc.oneof(
  rpc.map((m) => JSON.stringify(m)),
  fc.array(rpc, { maxLength: 4 }).map((b) => JSON.stringify(b)),
  fc.json({ maxDepth: 3 }),
  fc.string({ maxLength: 100 }),
  fc.integer({ min: 60, max: 5000 }).map((n) => "[".repeat(n) + "]".repeat(n)),
  fc.constantFrom("", "null", "{}", "[]", '{"jsonrpc":"2.0","id":1e999,"method":"ping"}', "\u0000\uffff"),
);
const requestArb = fc.record({
  method: fc.constantFrom("POST", "POST", "POST", "GET", "DELETE", "PUT", "PATCH", "OPTIONS"),
  path: fc.constantFrom(
    "/mcp",
    "/mcp",
    "/mcp",
    "/mcp/",
    "/MCP",
    "/mcp?x=1",
    "/other",
    "/.well-known/oauth-protected-resource",
  ),
  authorization,
  contentType: fc.option(
    fc.constantFrom(
      "application/json",
      "application/json; charset=utf-8",
      "text/plain",
      "application/jsonx",
      "*/*",
    ),
    { nil: undefined },
  ),
  accept: fc.option(fc.constantFrom("application/json, text/event-stream", "text/event-stream", "*/*"), {
    nil: undefined,
  }),
  extra: fc.dictionary(
    fc.constantFrom(
      "mcp-protocol-version",
      "mcp-session-id",
      "mcp-method",
      "mcp-name",
      "origin",
      "last-event-id",
      "x-forwarded-for",
    ),
    fc.oneof(headerText, fc.constantFrom("2025-06-18", "2026-07-28", "tools/call", "http://evil.example")),
    { maxKeys: 3 },
  ),
  body,
});

describe("the gateway under garbage input", () => {
  let upstream: CannedUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    upstream = await startCannedUpstream();
    // The credential-guessing guard would lock 127.0.0.1 out after a few bad keys (and answer 429 to
    // everything): set it out of reach so every request is judged on its own.
    gw = await startTestGateway(
      { upstream: { url: upstream.url }, guard: { failures: 1_000_000 } },
      { MCP_API_KEY: KEY },
      "warn",
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it("never answers 5xx and forwards only well-formed, authenticated requests", async () => {
    let forwarded = 0;
    const origin = new URL(gw.url).origin;
    await fc.assert(
      fc.asyncProperty(requestArb, async (r) => {
        const before = upstream.seen.length;
        const headers: Record<string, string | string[]> = { ...r.extra };
        if (r.authorization !== undefined) headers.authorization = r.authorization;
        if (r.contentType !== undefined) headers["content-type"] = r.contentType;
        if (r.accept !== undefined) headers.accept = r.accept;
        const hasBody = r.method !== "GET" && r.method !== "OPTIONS";
        const res = await request(`${origin}${r.path}`, {
          method: r.method as "POST",
          headers,
          ...(hasBody ? { body: r.body } : {}),
        });
        await res.body.text();
        expect(res.statusCode).toBeLessThan(500);
        const reached = upstream.seen.slice(before);
        if (reached.length === 0) return;
        forwarded++;
        expect(reached).toHaveLength(1);
        expect(carriesKey(r.authorization)).toBe(true);
        expect(reached[0]!.headers.authorization).toBeUndefined();
        if (r.method === "POST") {
          expect(isWellFormedJsonRpc(r.body)).toBe(true);
          expect(reached[0]!.json).toBe(true);
        }
      }),
      { numRuns: 400 },
    );
    // The generator must also produce requests that pass, or the property proves nothing.
    expect(forwarded).toBeGreaterThan(0);
    expect(upstream.seen.every((s) => !JSON.stringify(s).includes(KEY))).toBe(true);
  });

  it("never answers 5xx to raw bytes on the socket and keeps serving afterwards", async () => {
    const { port } = gw.address;
    const before = upstream.seen.length;
    const line = fc.string({
      unit: fc.constantFrom(
        ...'GETPOS /mcpHTTP/1.1\r\n:aZ0 \t\u0000\u00ff{}[]"Content-Length: 99999999\r\n'.split(""),
      ),
      maxLength: 200,
    });
    const raw = fc.oneof(
      line,
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString("latin1")),
      line.map((l) => `POST /mcp HTTP/1.1\r\nHost: x\r\n${l}\r\n\r\n`),
      fc.nat(5000).map((n) => `POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: ${n}\r\n\r\n{`),
      headerText.map((h) => `POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ${h}\r\n\r\n0\r\n\r\n`),
    );
    await fc.assert(
      fc.asyncProperty(raw, async (bytes) => {
        const reply = await new Promise<string>((resolve) => {
          const s = connect(port, "127.0.0.1");
          let got = "";
          s.setEncoding("latin1");
          s.on("data", (d) => {
            got += d;
          });
          s.on("error", () => resolve(got));
          s.on("close", () => resolve(got));
          // Send and half-close: the server answers (or drops us); stop waiting after 300 ms regardless.
          s.end(bytes, "latin1");
          setTimeout(() => s.destroy(), 300).unref();
        });
        for (const status of reply.matchAll(/HTTP\/1\.1 (\d{3})/g))
          expect(Number(status[1])).toBeLessThan(500);
      }),
      { numRuns: 60 },
    );
    expect(upstream.seen.length).toBe(before);
    const ok = await request(gw.url, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    });
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.json()).toEqual({ jsonrpc: "2.0", id: 1, result: {} });
  });
});
