import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient, INIT, messagesOf, rawPost, rawStatusLine } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

const KEY = "sk-test-0123456789abcdef-static-key-please-never-log";

describe("gateway in front of an SDK server (static key)", () => {
  let upstream: RecordingUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({ upstream: { url: upstream.url } }, { MCP_API_KEY: KEY });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it("runs initialize, tools/list and tools/call with the official SDK client", async () => {
    const { client } = await connectClient(gw.url, KEY);
    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name).sort()).toEqual(["add", "count", "delete_note", "echo"]);
    const result = await client.callTool({ name: "add", arguments: { a: 2, b: 40 } });
    expect(result.content).toEqual([{ type: "text", text: "42" }]);
    await client.close();
  });

  it("streams progress notifications before the final result (no buffering)", async () => {
    const { client } = await connectClient(gw.url, KEY);
    const events: Array<{ kind: string; at: number }> = [];
    const result = await client.callTool({ name: "count", arguments: { n: 5 } }, undefined, {
      onprogress: (p) => events.push({ kind: `progress:${p.progress}`, at: performance.now() }),
    });
    events.push({ kind: "result", at: performance.now() });
    expect(result.content).toEqual([{ type: "text", text: "counted to 5" }]);
    expect(events.map((e) => e.kind)).toEqual([
      "progress:1",
      "progress:2",
      "progress:3",
      "progress:4",
      "progress:5",
      "result",
    ]);
    // The upstream sleeps 10 ms between steps: a buffering proxy would deliver them all at once.
    expect(events[4]!.at - events[0]!.at).toBeGreaterThan(20);
    await client.close();
  });

  it("relays the GET SSE stream and DELETE ends the session", async () => {
    const { client, transport } = await connectClient(gw.url, KEY);
    const sessionId = transport.sessionId!;
    expect(sessionId).toBeTruthy();
    // The SDK client opens the GET stream itself after initialize: it must have reached the upstream.
    await new Promise((r) => setTimeout(r, 200));
    const gets = upstream.seen.filter((s) => s.method === "GET" && s.headers["mcp-session-id"] === sessionId);
    expect(gets.length).toBe(1);
    expect(gets[0]!.headers.accept).toContain("text/event-stream");
    // A second GET stream on the same session is refused by the upstream (409), relayed as is.
    const second = await fetch(gw.url, {
      headers: {
        accept: "text/event-stream",
        authorization: `Bearer ${KEY}`,
        "mcp-session-id": sessionId,
        "mcp-protocol-version": "2025-06-18",
      },
    });
    expect(second.status).toBe(409);
    await second.body?.cancel();
    const deletesBefore = upstream.seen.filter((s) => s.method === "DELETE").length;
    await transport.terminateSession();
    const after = await rawPost(
      gw.url,
      { jsonrpc: "2.0", id: 9, method: "tools/list" },
      {
        authorization: `Bearer ${KEY}`,
        "mcp-session-id": sessionId,
        "mcp-protocol-version": "2025-06-18",
      },
    );
    expect(after.status).toBe(404);
    expect(upstream.seen.filter((s) => s.method === "DELETE").length).toBe(deletesBefore + 1);
    await client.close();
  });

  it("never sends the client's Authorization or cookies upstream", async () => {
    const before = upstream.seen.length;
    const { client } = await connectClient(gw.url, KEY);
    await client.listTools();
    await rawPost(gw.url, INIT, { authorization: `Bearer ${KEY}`, cookie: "sid=secret-cookie" });
    await client.close();
    const seen = upstream.seen.slice(before);
    expect(seen.length).toBeGreaterThan(2);
    for (const s of seen) {
      expect(s.headers.authorization).toBeUndefined();
      expect(s.headers.cookie).toBeUndefined();
      expect(JSON.stringify(s.headers)).not.toContain(KEY);
    }
  });

  it("serves /healthz without auth", async () => {
    const res = await fetch(new URL("/healthz", gw.url));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  describe("401s", () => {
    const cases: Array<[string, Record<string, string>, string | undefined]> = [
      ["no Authorization header", {}, undefined],
      ["an empty Authorization header", { authorization: "" }, undefined],
      ["another scheme", { authorization: `Basic ${KEY}` }, "invalid_token"],
      ["Bearer without a token", { authorization: "Bearer " }, "invalid_token"],
      ["two spaces after Bearer", { authorization: `Bearer  ${KEY}` }, "invalid_token"],
      [
        "a space inside the token",
        { authorization: `Bearer ${KEY.slice(0, 10)} ${KEY.slice(10)}` },
        "invalid_token",
      ],
      [
        "a lower-case scheme with a wrong key",
        { authorization: "bearer sk-wrong-wrong-wrong-wrong" },
        "invalid_token",
      ],
      ["a wrong key", { authorization: "Bearer sk-test-wrong-key-of-some-length" }, "invalid_token"],
      ["the key with a character missing", { authorization: `Bearer ${KEY.slice(0, -1)}` }, "invalid_token"],
      ["two credentials in one header", { authorization: `Bearer ${KEY}, Bearer ${KEY}` }, "invalid_token"],
    ];
    for (const [name, headers, error] of cases) {
      it(`answers 401 with a Bearer realm challenge for ${name}`, async () => {
        const before = upstream.seen.length;
        const res = await rawPost(gw.url, INIT, headers);
        expect(res.status).toBe(401);
        const challenge = res.headers.get("www-authenticate")!;
        expect(challenge).toMatch(/^Bearer realm="mcp"/);
        expect(challenge).not.toContain("resource_metadata");
        if (error) expect(challenge).toContain(`error="${error}"`);
        else expect(challenge).not.toContain("error=");
        expect(res.text).not.toContain(KEY);
        expect(upstream.seen.length).toBe(before);
      });
    }

    it("answers 401 to two Authorization headers even when both hold the key", async () => {
      const u = new URL(gw.url);
      const body = JSON.stringify(INIT);
      const raw = await new Promise<string>((resolve, reject) => {
        const sock = connect(Number(u.port), u.hostname, () => {
          sock.end(
            `POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${KEY}\r\nAuthorization: Bearer ${KEY}\r\n` +
              `Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
          );
        });
        let data = "";
        sock.on("data", (d) => {
          data += d;
        });
        sock.on("end", () => resolve(data));
        sock.on("error", reject);
      });
      expect(raw.split("\r\n")[0]).toBe("HTTP/1.1 401 Unauthorized");
    });

    it("answers 401 before looking at a malformed body", async () => {
      const res = await rawPost(gw.url, "{not json");
      expect(res.status).toBe(401);
    });
  });

  describe("key-only mode: no OAuth discovery", () => {
    it("answers 404 on both Protected Resource Metadata paths", async () => {
      for (const path of [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
      ]) {
        const res = await fetch(new URL(path, gw.url));
        expect(res.status).toBe(404);
      }
    });
  });

  describe("400s, 413, 403", () => {
    const auth = { authorization: `Bearer ${KEY}` };
    it("answers malformed JSON with 400 and JSON-RPC -32700", async () => {
      const res = await rawPost(gw.url, "{not json", auth);
      expect(res.status).toBe(400);
      expect((res.json() as { error: { code: number } }).error.code).toBe(-32700);
    });
    it("answers a body that is not JSON-RPC with 400 and -32600", async () => {
      for (const body of [
        '{"hello":"world"}',
        "[]",
        '{"jsonrpc":"2.0","method":42,"id":1}',
        '{"jsonrpc":"1.0","method":"ping","id":1}',
      ]) {
        const res = await rawPost(gw.url, body, auth);
        expect(res.status, body).toBe(400);
        expect((res.json() as { error: { code: number } }).error.code).toBe(-32600);
      }
    });
    it("refuses deeply nested JSON without parsing it", async () => {
      const res = await rawPost(gw.url, `${"[".repeat(10_000)}${"]".repeat(10_000)}`, auth);
      expect(res.status).toBe(400);
    });
    it("answers a body over the limit with 413", async () => {
      const big = JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: { name: "echo", arguments: { message: "x".repeat(5 * 1024 * 1024) } },
      });
      const line = await rawStatusLine(gw.url, { ...auth, "content-type": "application/json" }, big);
      expect(line).toBe("HTTP/1.1 413 Payload Too Large");
      // Just under the limit is accepted (the limit is not off by a lot).
      const small = JSON.stringify({ jsonrpc: "2.0", id: 2, method: "ping" });
      expect((await rawPost(gw.url, small, auth)).status).not.toBe(413);
    });
    it("answers a foreign Origin with 403 and allows no Origin", async () => {
      const bad = await rawPost(gw.url, INIT, { ...auth, origin: "http://evil.example" });
      expect(bad.status).toBe(403);
      const ok = await rawPost(gw.url, INIT, auth);
      expect(ok.status).toBe(200);
    });
    it("answers a 2026-era request whose Mcp-Name lies about the body with 400 -32020", async () => {
      const res = await rawPost(
        gw.url,
        {
          jsonrpc: "2.0",
          id: 3,
          method: "tools/call",
          params: {
            name: "delete_note",
            arguments: { name: "x" },
            _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28" },
          },
        },
        { ...auth, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo" },
      );
      expect(res.status).toBe(400);
      expect((res.json() as { error: { code: number } }).error.code).toBe(-32020);
    });
  });

  it("never writes the key to a log line", () => {
    expect(gw.logs.length).toBeGreaterThan(5);
    for (const line of gw.logs) expect(line).not.toContain(KEY);
    expect(gw.logs.some((l) => l.includes('"msg":"request"'))).toBe(true);
  });
});

describe("fail closed and upstream failures", () => {
  it("answers 500 'server auth not configured' when no credential is configured", async () => {
    const upstream = await startRecordingUpstream();
    const gw = await startTestGateway({ upstream: { url: upstream.url } }, {});
    try {
      const res = await rawPost(gw.url, INIT, { authorization: `Bearer ${KEY}` });
      expect(res.status).toBe(500);
      expect(res.json()).toEqual({ error: "server auth not configured" });
      expect(upstream.seen.length).toBe(0);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });

  it("answers 502 with a JSON-RPC error and no detail when the upstream is down", async () => {
    const dead: Server = createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const gw = await startTestGateway(
      { upstream: { url: `http://127.0.0.1:${port}/mcp` } },
      { MCP_API_KEY: KEY },
    );
    try {
      const res = await rawPost(gw.url, INIT, { authorization: `Bearer ${KEY}` });
      expect(res.status).toBe(502);
      const body = res.json() as { error: { message: string } };
      expect(body.error.message).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
    } finally {
      await gw.close();
    }
  });

  it("answers 504 when the upstream accepts and never answers", async () => {
    const sockets = new Set<import("node:net").Socket>();
    const silent = createServer(() => {});
    silent.on("connection", (s) => sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as AddressInfo).port;
    const gw = await startTestGateway(
      { upstream: { url: `http://127.0.0.1:${port}/mcp`, timeout: "300ms" } },
      { MCP_API_KEY: KEY },
    );
    try {
      const started = Date.now();
      const res = await rawPost(gw.url, INIT, { authorization: `Bearer ${KEY}` });
      expect(res.status).toBe(504);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await gw.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });
});

describe("SDK client against the gateway without a key", () => {
  it("fails to connect with a 401", async () => {
    const upstream = await startRecordingUpstream();
    const gw = await startTestGateway({ upstream: { url: upstream.url } }, { MCP_API_KEY: KEY });
    try {
      const client = new Client({ name: "t", version: "1" });
      await expect(client.connect(new StreamableHTTPClientTransport(new URL(gw.url)))).rejects.toThrow();
      expect(upstream.seen.length).toBe(0);
      void messagesOf;
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
