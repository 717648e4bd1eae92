import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { afterEach, describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import { createDemoMcpServer } from "../../src/cli/demo-server.js";
import type { StateStore } from "../../src/core/contracts.js";
import { createGate } from "../../src/gate/gate.js";
import { createHttpUpstream } from "../../src/gateway/http-upstream.js";
import { createGatewayServer } from "../../src/gateway/server.js";
import { createLogger } from "../../src/observe/logger.js";
import { createMemoryStateStore } from "../../src/stores/memory-state.js";
import { connectClient, INIT, rawPost } from "../helpers/client.js";
import { startTestGateway } from "../helpers/gateway.js";

/**
 * An upstream mints a session on `initialize` before the gate decides whether it may be bound.
 * When the gate refuses (the caller's share, `sessions.perPrincipal`, is full; or the session store
 * is down), the client never learns the id, so only the gateway can end that session: it sends a
 * DELETE upstream (http-upstream.ts, end of forwardNow). Here the upstream is the SDK's own
 * Streamable HTTP server, counting its live sessions with the transport's session hooks.
 */

const KEY = "refused-session-key-0123456789abcdef";
/** The gateway's own credential for the upstream (`upstream.headers`): the DELETE must carry it. */
const UPSTREAM_KEY = "upstream-own-key-0123456789";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

/**
 * An SDK MCP server over Streamable HTTP (sessions on) that knows which of its sessions are live.
 * Its `initialize` answers take `initDelayMs`, so that concurrent initializes all pass the gate's
 * room check before any of them is bound.
 */
async function startSdkUpstream(initDelayMs = 0) {
  const live = new Set<string>();
  const minted: string[] = [];
  /** Session ids of the DELETEs that carried the gateway's upstream key (others get 401). */
  const deletes: string[] = [];
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const server = createServer(async (req, res) => {
    if (req.headers["x-upstream-key"] !== UPSTREAM_KEY) {
      res.writeHead(401).end();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : undefined;
    const sid = req.headers["mcp-session-id"];
    if (req.method === "DELETE") deletes.push(String(sid));
    let transport = typeof sid === "string" ? transports.get(sid) : undefined;
    if (!transport && typeof sid === "string") {
      res.writeHead(404).end();
      return;
    }
    if (!transport) {
      const t = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, t);
          live.add(id);
          minted.push(id);
        },
        onsessionclosed: (id) => {
          transports.delete(id);
          live.delete(id);
        },
      });
      await createDemoMcpServer().connect(t);
      transport = t;
      if (body?.method === "initialize") await new Promise((r) => setTimeout(r, initDelayMs));
    }
    await transport.handleRequest(req, res, body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(async () => {
    for (const t of transports.values()) await t.close().catch(() => {});
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    live,
    minted,
    deletes,
  };
}

/** Wait until `check` holds (the DELETE is sent in the background, after the answer). */
async function settled(check: () => boolean, timeoutMs = 3_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return check();
}

describe("a session the upstream minted but the gate refused is ended upstream", () => {
  it("at the caller's share (sessions.perPrincipal): 429 -31002, and the upstream gets a DELETE for it", async () => {
    const up = await startSdkUpstream(300);
    const gw = await startTestGateway(
      {
        upstream: { url: up.url, headers: { "x-upstream-key": UPSTREAM_KEY } },
        sessions: { perPrincipal: 2 },
      },
      { MCP_API_KEY: KEY },
      "warn",
    );
    cleanups.push(() => gw.close());
    const { client, transport } = await connectClient(gw.url, KEY);
    cleanups.push(() => client.close());
    // One slot left, two initializes at once: both pass the room check and reach the upstream,
    // which mints two sessions; only one can be bound.
    const init = () => rawPost(gw.url, INIT, { authorization: `Bearer ${KEY}` });
    const answers = await Promise.all([init(), init()]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 429]);
    const won = answers.find((a) => a.status === 200)!;
    const refused = answers.find((a) => a.status === 429)!;
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(refused.headers.get("mcp-session-id")).toBeNull();
    expect(refused.json()).toMatchObject({ jsonrpc: "2.0", error: { code: -31002 } });

    // The refused session is ended upstream; the two bound ones are live.
    const kept = [transport.sessionId, won.headers.get("mcp-session-id")];
    expect(up.minted).toHaveLength(3);
    const orphan = up.minted.find((id) => !kept.includes(id))!;
    expect(await settled(() => up.live.size === 2)).toBe(true);
    expect(new Set(up.live)).toEqual(new Set(kept));
    expect(up.deletes).toEqual([orphan]);

    // At its share, the SDK client's next initialize is refused before it reaches the upstream.
    await expect(connectClient(gw.url, KEY)).rejects.toThrow(/429|Too Many Requests/);
    expect(up.minted).toHaveLength(3);
    const r = await client.callTool({ name: "echo", arguments: { message: "still here" } });
    expect(r.isError).toBeFalsy();
  });

  it("with the session store down: 503 -31009, and the upstream gets a DELETE for it", async () => {
    const up = await startSdkUpstream();
    const memory = createMemoryStateStore();
    const down: StateStore = {
      admit: (input) => memory.admit(input),
      removeSession: (id) => memory.removeSession(id),
      bindSession: async () => {
        throw new Error("state store unreachable");
      },
    };
    const gw = createGatewayServer({
      gate: createGate({
        verifiers: [createStaticKeyVerifier({ key: KEY })],
        publicUrl: "http://127.0.0.1/mcp",
        state: down,
      }),
      upstream: createHttpUpstream({ url: up.url, headers: { "x-upstream-key": UPSTREAM_KEY } }),
      logger: createLogger({ level: "silent" }),
      mcpPath: "/mcp",
      shutdownGraceMs: 100,
    });
    const { port } = await gw.listen(0, "127.0.0.1");
    cleanups.push(() => gw.close());
    const url = `http://127.0.0.1:${port}/mcp`;

    await expect(connectClient(url, KEY)).rejects.toThrow(/503|Service Unavailable/);
    const refused = await rawPost(url, INIT, { authorization: `Bearer ${KEY}` });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("mcp-session-id")).toBeNull();
    expect(refused.json()).toMatchObject({ jsonrpc: "2.0", error: { code: -31009 } });

    expect(up.minted).toHaveLength(2);
    expect(await settled(() => up.live.size === 0)).toBe(true);
    expect([...up.deletes].sort()).toEqual([...up.minted].sort());
  });
});
