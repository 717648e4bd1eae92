import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import type { Authorizer } from "../../src/core/contracts.js";
import { createGate } from "../../src/gate/gate.js";
import { createHttpUpstream } from "../../src/gateway/http-upstream.js";
import { createGatewayServer, type GatewayServer } from "../../src/gateway/server.js";
import { createLogger } from "../../src/observe/logger.js";
import { createRedisStateStore, type RedisStateStore } from "../../src/stores/redis-state.js";
import { INIT, messagesOf } from "../helpers/client.js";
import { captureStream } from "../helpers/gateway.js";

/**
 * Issue 13 item 3: a list answer is filtered whichever stream it arrives on. Here an upstream cuts
 * a POST's SSE stream before the answer, and replays it on the GET stream when the client resumes
 * with Last-Event-ID (Streamable HTTP resumability); it also pushes an answer to an id nobody sent.
 * The replayed answer gets the client's id back and is filtered; the stray one never reaches the client.
 */
const KEY = "streams-test-key-0123456789abcdef";
const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const TOOLS = ["echo", "secret_admin"].map((name) => ({ name, inputSchema: { type: "object" } }));
const hideAdmin: Authorizer = {
  authorize: () => ({ allow: true }),
  filtersLists: () => true,
  isVisible: (_i, _k, name) => name !== "secret_admin",
  onDenied: () => "tool-error",
  scopesSupported: () => [],
};

describe("list answers on every stream", () => {
  let upstream: Server;
  const gateways: GatewayServer[] = [];
  const urls: string[] = [];
  const prefix = `mcpgate-test-streams-${process.pid}-${Date.now()}:`;
  const states: RedisStateStore[] = [0, 1].map(() => createRedisStateStore({ url: REDIS_URL, prefix }));
  let pendingListWireId: unknown;
  const sse = (res: ServerResponse, sid: string) =>
    res.writeHead(200, { "content-type": "text/event-stream", "mcp-session-id": sid });
  const event = (id: string, msg: unknown) => `id: ${id}\nevent: message\ndata: ${JSON.stringify(msg)}\n\n`;

  beforeAll(async () => {
    upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        if (req.method === "GET") {
          sse(res, "s-streams");
          // Resumption: replay the list answer the cut POST stream never delivered, then a stray
          // answer to an id the gateway never issued (another session's, a bug, an attack).
          if (req.headers["last-event-id"] === "e1") {
            res.write(event("e2", { jsonrpc: "2.0", id: pendingListWireId, result: { tools: TOOLS } }));
            res.write(event("e3", { jsonrpc: "2.0", id: "someone-else-9", result: { tools: TOOLS } }));
          }
          res.end();
          return;
        }
        const msg = JSON.parse(body);
        if (msg.method === "initialize") {
          sse(res, "s-streams");
          res.end(
            event("e0", {
              jsonrpc: "2.0",
              id: msg.id,
              result: {
                protocolVersion: "2025-06-18",
                capabilities: { tools: {} },
                serverInfo: { name: "u", version: "1" },
              },
            }),
          );
          return;
        }
        if (msg.method === "tools/list") {
          // Cut the stream after a priming event, before the answer.
          pendingListWireId = msg.id;
          sse(res, "s-streams");
          res.end(`id: e1\ndata: \n\n`);
          return;
        }
        res.writeHead(202).end();
      });
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    // Two gateway instances sharing their state in Redis, as behind a load balancer.
    for (const state of states) {
      await state.init();
      const gw = createGatewayServer({
        gate: createGate({
          verifiers: [createStaticKeyVerifier({ key: KEY })],
          publicUrl: "http://127.0.0.1/mcp",
          authorizer: hideAdmin,
          state,
        }),
        upstream: createHttpUpstream({
          url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`,
        }),
        logger: createLogger({ level: "warn", destination: captureStream([]) }),
        mcpPath: "/mcp",
        shutdownGraceMs: 200,
      });
      gateways.push(gw);
      urls.push(`http://127.0.0.1:${(await gw.listen(0, "127.0.0.1")).port}/mcp`);
    }
  });
  afterAll(async () => {
    for (const gw of gateways) await gw.close();
    for (const state of states) await state.close();
    const raw = new Redis(REDIS_URL);
    const left = await raw.keys(`${prefix}*`);
    if (left.length) await raw.del(...left);
    await raw.quit();
    upstream.closeAllConnections();
    await new Promise<void>((r) => upstream.close(() => r()));
  });

  const base = {
    authorization: `Bearer ${KEY}`,
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
  };
  const h = { ...base, "mcp-session-id": "s-streams", "mcp-protocol-version": "2025-06-18" };

  it.each([
    ["the same instance", 0, 0],
    ["another instance (the session's state in Redis)", 0, 1],
  ])(
    "maps a replayed list answer back to the client's id and filters it, resumed on %s; drops an unattributable one",
    async (_, first, second) => {
      if (first === 0 && second === 0) {
        const init = await fetch(urls[0]!, { method: "POST", headers: base, body: JSON.stringify(INIT) });
        await init.text();
      }
      const cut = await fetch(urls[first]!, {
        method: "POST",
        headers: h,
        body: JSON.stringify({ jsonrpc: "2.0", id: 42, method: "tools/list" }),
      });
      expect(messagesOf(await cut.text())).toEqual([]);
      expect(typeof pendingListWireId).toBe("string");
      expect(pendingListWireId).not.toBe(42);

      const resumed = await fetch(urls[second]!, {
        headers: { ...h, accept: "text/event-stream", "last-event-id": "e1" },
      });
      const text = await resumed.text();
      const msgs = messagesOf(text);
      expect(msgs).toHaveLength(1);
      expect(msgs[0]!.id).toBe(42);
      expect((msgs[0]!.result as { tools: Array<{ name: string }> }).tools.map((t) => t.name)).toEqual([
        "echo",
      ]);
      expect(text).not.toContain("secret_admin");
      expect(text).not.toContain("someone-else");
      // The stray event keeps its event id (resumption still counts it) but carries no message.
      expect(text).toContain("id: e3");
    },
  );
});
