import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import type { StateStore } from "../../src/core/contracts.js";
import { createGate } from "../../src/gate/gate.js";
import { createHttpUpstream } from "../../src/gateway/http-upstream.js";
import { createGatewayServer, type GatewayServer } from "../../src/gateway/server.js";
import { createLogger } from "../../src/observe/logger.js";
import { createMemoryStateStore } from "../../src/stores/memory-state.js";
import { INIT, rawPost } from "../helpers/client.js";
import { captureStream } from "../helpers/gateway.js";

const KEY = "bind-failure-test-key-0123456789";

describe("a session the gate cannot bind", () => {
  let upstream: Server;
  let gw: GatewayServer;
  let url: string;
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);

  beforeAll(async () => {
    process.on("uncaughtException", onUnhandled);
    // An upstream that mints a session and answers initialize over SSE, as the SDK does; the
    // gateway then drops that body unread.
    upstream = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream", "mcp-session-id": "s-0123456789abcdef" });
      res.end('event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n');
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const memory = createMemoryStateStore();
    const failing: StateStore = {
      admit: (input) => memory.admit(input),
      removeSession: (id) => memory.removeSession(id),
      bindSession: async () => {
        throw new Error("state store unreachable");
      },
    };
    const gate = createGate({
      verifiers: [createStaticKeyVerifier({ key: KEY })],
      publicUrl: "http://127.0.0.1/mcp",
      state: failing,
    });
    const logs: string[] = [];
    gw = createGatewayServer({
      gate,
      upstream: createHttpUpstream({
        url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`,
      }),
      logger: createLogger({
        level: "error",
        destination: captureStream(logs),
      }),
      mcpPath: "/mcp",
    });
    const addr = await gw.listen(0, "127.0.0.1");
    url = `http://127.0.0.1:${addr.port}/mcp`;
  });
  afterAll(async () => {
    process.off("uncaughtException", onUnhandled);
    upstream.closeAllConnections();
    await gw.close();
    await new Promise<void>((r) => upstream.close(() => r()));
  });

  it("answers 503, never hands out the session id, and leaves no unhandled stream error", async () => {
    for (let i = 0; i < 5; i++) {
      const res = await rawPost(url, INIT, { authorization: `Bearer ${KEY}` });
      expect(res.status).toBe(503);
      expect(res.headers.get("mcp-session-id")).toBeNull();
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(unhandled).toEqual([]);
  });
});

describe("a client that leaves while its session is being bound", () => {
  it("settles the request: nothing stays in flight once the bind returns", async () => {
    const upstream = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream", "mcp-session-id": "s-slow-bind-0123456789" });
      res.end('event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n');
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const memory = createMemoryStateStore();
    let entered!: () => void;
    const binding = new Promise<void>((r) => {
      entered = r;
    });
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    // A store whose bind takes as long as the test likes (a slow Redis round trip, stretched).
    const slow: StateStore = {
      admit: (input) => memory.admit(input),
      removeSession: (id) => memory.removeSession(id),
      bindSession: async (...args) => {
        entered();
        await released;
        return memory.bindSession(...args);
      },
    };
    const gw = createGatewayServer({
      gate: createGate({
        verifiers: [createStaticKeyVerifier({ key: KEY })],
        publicUrl: "http://127.0.0.1/mcp",
        state: slow,
      }),
      upstream: createHttpUpstream({
        url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`,
      }),
      logger: createLogger({ level: "silent" }),
      mcpPath: "/mcp",
      shutdownGraceMs: 100,
    });
    const addr = await gw.listen(0, "127.0.0.1");
    try {
      const ac = new AbortController();
      const answer = fetch(`http://127.0.0.1:${addr.port}/mcp`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${KEY}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        },
        body: JSON.stringify(INIT),
        signal: ac.signal,
      }).catch(() => undefined);
      await binding;
      ac.abort();
      await answer;
      await new Promise((r) => setTimeout(r, 50));
      release();
      await expect.poll(() => gw.inFlight(), { timeout: 2000 }).toBe(0);
    } finally {
      release();
      upstream.closeAllConnections();
      await gw.close();
      await new Promise<void>((r) => upstream.close(() => r()));
    }
  });
});
