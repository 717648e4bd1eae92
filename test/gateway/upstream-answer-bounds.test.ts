import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ElicitRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { JSONRPC } from "../../src/core/challenge.js";
import { connectClient, rawSession } from "../helpers/client.js";
import { startTestGateway } from "../helpers/gateway.js";
import { startRecordingUpstream } from "../helpers/upstream.js";

/**
 * A POST's SSE answer that stops coming: an SDK upstream whose tool says it is working, then goes
 * quiet for good (or its connection dies). The gateway must not hold the upstream connection (and
 * the caller's share of the pool) for as long as the client waits, and the client must hear why
 * its request ended rather than wait to its own timeout.
 */

const KEY = `bounds-${randomBytes(16).toString("hex")}`;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

/** An SDK upstream with `hang` (a log message, then silence) and `die` (a log message, then its connection is cut). */
async function start(upstream: Record<string, unknown> = {}) {
  let socketOfCall: Socket | undefined;
  // `hang` calls whose work the upstream was told to stop (their signal aborted: a cancellation).
  const stopped: string[] = [];
  const up = await startRecordingUpstream({
    makeServer: () => {
      const server = new McpServer({ name: "quiet", version: "1.0.0" }, { capabilities: { logging: {} } });
      server.registerTool("ask", { description: "asks the person, then answers" }, async (extra) => {
        const answer = await server.server.elicitInput(
          {
            message: "Go on?",
            requestedSchema: { type: "object", properties: { yes: { type: "boolean" } } },
          },
          { relatedRequestId: extra.requestId },
        );
        return { content: [{ type: "text", text: answer.action }] };
      });
      server.registerTool(
        "flood",
        { description: "8 MiB of log messages, then the answer" },
        async (extra) => {
          const chunk = "x".repeat(64 * 1024);
          for (let i = 0; i < 128; i++)
            await extra.sendNotification({
              method: "notifications/message",
              params: { level: "info", data: chunk },
            });
          return { content: [{ type: "text", text: "flooded" }] };
        },
      );
      server.registerTool("hang", { description: "says it works, then never answers" }, async (extra) => {
        await extra.sendNotification({
          method: "notifications/message",
          params: { level: "info", data: "working" },
        });
        await new Promise((r) => extra.signal.addEventListener("abort", r));
        stopped.push(String(extra.requestId));
        return { content: [] };
      });
      server.registerTool(
        "die",
        { description: "says it works, then its connection dies" },
        async (extra) => {
          await extra.sendNotification({
            method: "notifications/message",
            params: { level: "info", data: "working" },
          });
          setTimeout(() => socketOfCall?.destroy(), 50);
          await new Promise((r) => extra.signal.addEventListener("abort", r));
          return { content: [] };
        },
      );
      return server;
    },
  });
  cleanups.push(() => up.close());
  // The upstream's tools/call responses: when each one closed (the gateway let go of it).
  const callsOpen = new Set<object>();
  up.server.prependListener("request", (req, res) => {
    if (req.method !== "POST") return;
    socketOfCall = req.socket;
    callsOpen.add(res);
    res.on("close", () => callsOpen.delete(res));
  });
  const gw = await startTestGateway(
    { upstream: { url: up.url, ...upstream }, guard: { failures: 1_000_000 } },
    { MCP_API_KEY: KEY },
    "info",
  );
  cleanups.push(() => gw.close());
  const { client } = await connectClient(gw.url, KEY);
  cleanups.push(() => client.close());
  const logs: string[] = [];
  client.setNotificationHandler(
    (await import("@modelcontextprotocol/sdk/types.js")).LoggingMessageNotificationSchema,
    (n) => void logs.push(String(n.params.data)),
  );
  return { gw, client, logs, callsOpen, up, stopped };
}

async function failure(p: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const t0 = performance.now();
  try {
    await p;
  } catch (error) {
    return { error, ms: performance.now() - t0 };
  }
  throw new Error("the call succeeded");
}

describe("a POST's SSE answer that goes quiet (upstream.streamIdleTimeout)", () => {
  it("is given up after the idle bound: the client's request gets 504-class JSON-RPC error, the upstream is let go", async () => {
    const { gw, client, logs, callsOpen, up, stopped } = await start({ streamIdleTimeout: "500ms" });
    // The client's standalone GET stream is in flight for as long as the session lasts.
    await expect.poll(() => gw.server.inFlight(), { timeout: 2_000 }).toBe(1);
    const { error, ms } = await failure(
      client.callTool({ name: "hang", arguments: {} }, undefined, { timeout: 20_000 }),
    );
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).code).toBe(JSONRPC.UPSTREAM_TIMEOUT);
    // The upstream's event arrived first; the error came at the bound, not at the client's 20 s.
    expect(logs).toEqual(["working"]);
    expect(ms).toBeGreaterThanOrEqual(450);
    expect(ms).toBeLessThan(5_000);
    await expect.poll(() => callsOpen.size, { timeout: 2_000 }).toBe(0);
    // The upstream was told to stop the work (MCP cancellation of the id it was sent), and did.
    await expect.poll(() => stopped.length, { timeout: 2_000 }).toBe(1);
    expect(up.rpcCalls()).toContain("notifications/cancelled");
    expect(stopped[0]).toMatch(/^mcpgate-/);
    await expect.poll(() => gw.server.inFlight(), { timeout: 2_000 }).toBe(1);
    // The request log says what happened.
    const line = gw.logs.map((l) => JSON.parse(l)).find((l) => l.decision === "upstream_timeout");
    expect(line).toMatchObject({ tool: "hang", status: 200 });
    // The session goes on.
    expect(await client.callTool({ name: "echo", arguments: { text: "still here" } })).toBeDefined();
  });

  it("keeps a quiet answer open while it is under the bound", async () => {
    const { client, callsOpen } = await start({ streamIdleTimeout: "30s" });
    const ac = new AbortController();
    const call = client.callTool({ name: "hang", arguments: {} }, undefined, {
      signal: ac.signal,
      timeout: 20_000,
    });
    call.catch(() => {});
    await new Promise((r) => setTimeout(r, 1_500));
    expect(callsOpen.size).toBe(1);
    ac.abort();
  });
});

describe("a POST's SSE answer its client is slow to read", () => {
  it("is not given up for the silence the gateway itself makes by not reading the upstream (backpressure)", async () => {
    const { gw } = await start({ streamIdleTimeout: "400ms" });
    const h = await rawSession(gw.url, `Bearer ${KEY}`);
    const res = await fetch(gw.url, {
      method: "POST",
      headers: { ...h, "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 9,
        method: "tools/call",
        params: { name: "flood", arguments: {} },
      }),
    });
    // The client takes nothing for well past the idle bound: the gateway stops reading the upstream,
    // which is then silent only because of that.
    await new Promise((r) => setTimeout(r, 1_500));
    const text = await res.text();
    expect(text).not.toContain("-31005");
    expect(text).toContain("flooded");
  });
});

describe("a POST's SSE answer waiting on its client (elicitation)", () => {
  it("is not given up while a person takes longer than the idle bound to answer", async () => {
    const { gw } = await start({ streamIdleTimeout: "400ms" });
    const transport = new StreamableHTTPClientTransport(new URL(gw.url), {
      requestInit: { headers: { Authorization: `Bearer ${KEY}` } },
    });
    const client = new Client(
      { name: "asks-a-person", version: "1.0.0" },
      { capabilities: { elicitation: {} } },
    );
    client.setRequestHandler(ElicitRequestSchema, async () => {
      await new Promise((r) => setTimeout(r, 1_200));
      return { action: "accept", content: { yes: true } };
    });
    await client.connect(transport);
    cleanups.push(() => client.close());
    const result = await client.callTool({ name: "ask", arguments: {} }, undefined, { timeout: 20_000 });
    expect(result.content).toEqual([{ type: "text", text: "accept" }]);
  });
});

describe("a POST's SSE answer whose upstream connection dies (no event ids: it cannot be resumed)", () => {
  it("answers the unanswered request with a 502-class JSON-RPC error at once", async () => {
    const { client, logs } = await start();
    const { error, ms } = await failure(
      client.callTool({ name: "die", arguments: {} }, undefined, { timeout: 20_000 }),
    );
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).code).toBe(JSONRPC.UPSTREAM_UNAVAILABLE);
    expect(logs).toEqual(["working"]);
    expect(ms).toBeLessThan(3_000);
  });
});
