import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import type { Authorizer } from "../../src/core/contracts.js";
import { createGate } from "../../src/gate/gate.js";
import { createHttpUpstream } from "../../src/gateway/http-upstream.js";
import { createGatewayServer, type GatewayServer } from "../../src/gateway/server.js";
import { createLogger } from "../../src/observe/logger.js";
import {
  bobCannotSeeAdmin,
  KEYS,
  rawPost,
  startStdioGateway,
  type TestGateway,
} from "../gateway/stdio-helpers.js";
import { INIT, messagesOf } from "../helpers/client.js";
import { captureStream } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * Issue 13 item 3: answers belong to their requests. Two concurrent POSTs on one session with the
 * same JSON-RPC id — a slow tools/call and a tools/list — must each get their own answer, and the
 * list must be filtered for the caller whichever stream it arrives on. Against a real SDK upstream
 * whose list handler is async (HTTP) and a real stdio child.
 */
const KEY = "answers-test-key-0123456789abcdef";
const hideAdmin: Authorizer = {
  authorize: (_i, m) =>
    m.method === "tools/call" && m.name === "secret_admin"
      ? { allow: false, scopes: ["admin"], reason: "secret_admin needs the admin scope" }
      : { allow: true },
  filtersLists: () => true,
  isVisible: (_i, _k, name) => name !== "secret_admin",
  onDenied: () => "tool-error",
  scopesSupported: () => [],
};

/** A low-level SDK server: an async tools/list and a slow tool. */
function slowListServer(): McpServer {
  const server = new Server({ name: "slow-list", version: "1.0.0" }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => {
    await new Promise((r) => setTimeout(r, 30));
    return {
      tools: ["echo", "slow", "secret_admin"].map((name) => ({
        name,
        inputSchema: { type: "object" as const },
      })),
    };
  });
  server.setRequestHandler(CallToolRequestSchema, async (req) => {
    await new Promise((r) => setTimeout(r, req.params.name === "slow" ? 300 : 0));
    return { content: [{ type: "text", text: `${req.params.name} done` }] };
  });
  // startRecordingUpstream wants an McpServer-like object with connect(): Server has it.
  return server as unknown as McpServer;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Post a slow call and, 50 ms later, a tools/list with the same id; the messages each got. */
async function sameIdPair(post: (body: unknown) => Promise<Response>, slowCall: unknown) {
  const call = post(slowCall).then((r) => r.text());
  await new Promise((r) => setTimeout(r, 50));
  const list = post({ jsonrpc: "2.0", id: 7, method: "tools/list" }).then((r) => r.text());
  const [a, b] = await Promise.all([call, list]);
  return { call: messagesOf(a), list: messagesOf(b) };
}

describe("answers belong to their requests: HTTP upstream with an async list handler", () => {
  it("gives each of two same-id POSTs on one session its own answer, the list filtered", async () => {
    const upstream: RecordingUpstream = await startRecordingUpstream({ makeServer: slowListServer });
    cleanups.push(() => upstream.close());
    const gate = createGate({
      verifiers: [createStaticKeyVerifier({ key: KEY })],
      publicUrl: "http://127.0.0.1/mcp",
      authorizer: hideAdmin,
    });
    const logs: string[] = [];
    const gw: GatewayServer = createGatewayServer({
      gate,
      upstream: createHttpUpstream({ url: upstream.url }),
      logger: createLogger({ level: "warn", destination: captureStream(logs) }),
      mcpPath: "/mcp",
      shutdownGraceMs: 200,
    });
    const { port } = await gw.listen(0, "127.0.0.1");
    cleanups.push(() => gw.close());
    const url = `http://127.0.0.1:${port}/mcp`;
    const base = {
      authorization: `Bearer ${KEY}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    const init = await fetch(url, { method: "POST", headers: base, body: JSON.stringify(INIT) });
    await init.text();
    const sid = init.headers.get("mcp-session-id")!;
    const headers = { ...base, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" };
    const post = (body: unknown) => fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    await (await post({ jsonrpc: "2.0", method: "notifications/initialized" })).text();

    for (let round = 0; round < 3; round++) {
      const r = await sameIdPair(post, {
        jsonrpc: "2.0",
        id: 7,
        method: "tools/call",
        params: { name: "slow", arguments: {} },
      });
      expect(r.call).toEqual([
        { jsonrpc: "2.0", id: 7, result: { content: [{ type: "text", text: "slow done" }] } },
      ]);
      expect(r.list).toHaveLength(1);
      const tools = (r.list[0]!.result as { tools: Array<{ name: string }> }).tools.map((t) => t.name);
      expect(tools).toEqual(["echo", "slow"]);
      expect(JSON.stringify([r.call, r.list])).not.toContain("secret_admin");
    }
    // On the wire the upstream saw ids of the gateway's own, never the client's 7.
    const wireIds = upstream.seen
      .filter((s) => s.body.includes('"tools/list"') || s.body.includes('"tools/call"'))
      .map((s) => JSON.parse(s.body).id);
    expect(new Set(wireIds).size).toBe(wireIds.length);
    expect(wireIds).not.toContain(7);
  }, 30_000);
});

describe("answers belong to their requests: stdio upstream", () => {
  let gw: TestGateway | undefined;
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
  });

  it("gives each of two same-id POSTs on one session its own answer, the list filtered", async () => {
    gw = await startStdioGateway({ authorizer: bobCannotSeeAdmin });
    const init = await rawPost(gw.url, KEYS.bob, INIT);
    await init.text();
    const sid = init.headers.get("mcp-session-id")!;
    const h = { "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" };
    const post = (body: unknown) => rawPost(gw!.url, KEYS.bob, body, h);
    await (await post({ jsonrpc: "2.0", method: "notifications/initialized" })).text();
    for (let round = 0; round < 3; round++) {
      const r = await sameIdPair(post, {
        jsonrpc: "2.0",
        id: 7,
        method: "tools/call",
        params: { name: "sleep", arguments: { ms: 300 } },
      });
      expect(r.call).toEqual([
        { jsonrpc: "2.0", id: 7, result: { content: [{ type: "text", text: "slept" }] } },
      ]);
      const tools = (r.list[0]!.result as { tools: Array<{ name: string }> }).tools.map((t) => t.name);
      expect(tools).not.toContain("secret_admin");
      expect(tools).toContain("sleep");
    }
  }, 30_000);
});

describe("cancellations on the wire", () => {
  it("names the wire id of the request it cancels, and is answered 202 without forwarding when it names none", async () => {
    const upstream: RecordingUpstream = await startRecordingUpstream({ makeServer: slowListServer });
    cleanups.push(() => upstream.close());
    const gw: GatewayServer = createGatewayServer({
      gate: createGate({
        verifiers: [createStaticKeyVerifier({ key: KEY })],
        publicUrl: "http://127.0.0.1/mcp",
      }),
      upstream: createHttpUpstream({ url: upstream.url }),
      logger: createLogger({ level: "warn", destination: captureStream([]) }),
      mcpPath: "/mcp",
      shutdownGraceMs: 200,
    });
    const { port } = await gw.listen(0, "127.0.0.1");
    cleanups.push(() => gw.close());
    const url = `http://127.0.0.1:${port}/mcp`;
    const base = {
      authorization: `Bearer ${KEY}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    const init = await fetch(url, { method: "POST", headers: base, body: JSON.stringify(INIT) });
    await init.text();
    const headers = {
      ...base,
      "mcp-session-id": init.headers.get("mcp-session-id")!,
      "mcp-protocol-version": "2025-06-18",
    };
    const post = (body: unknown) => fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    const cancel = (requestId: number) => ({
      jsonrpc: "2.0",
      method: "notifications/cancelled",
      params: { requestId },
    });

    const before = upstream.seen.length;
    const stray = await post(cancel(99));
    expect(stray.status).toBe(202);
    expect(upstream.seen.length).toBe(before);

    // A cancelled request gets no answer (MCP cancellation): the client gives up its stream.
    const stop = new AbortController();
    const slow = fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 8,
        method: "tools/call",
        params: { name: "slow", arguments: {} },
      }),
      signal: stop.signal,
    }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    expect((await post(cancel(8))).status).toBe(202);
    stop.abort();
    await slow;
    const sent = upstream.seen.map((s) => (s.body ? JSON.parse(s.body) : undefined));
    const call = sent.find((m) => m?.method === "tools/call");
    const cancelled = sent.find((m) => m?.method === "notifications/cancelled");
    expect(typeof call.id).toBe("string");
    expect(cancelled.params.requestId).toBe(call.id);
  });
});
