import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { createMcpHandler, McpServer as McpServerV2 } from "@modelcontextprotocol/server";
import { z } from "zod";
import { answerWithFetchHandler } from "../../helpers/fetch-handler.js";

/** Real servers for probe tests, all on 127.0.0.1 with a random port. */
export interface TestServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export interface ToolDef {
  name: string;
  description: string;
  field: string;
}

export interface SdkServerOptions {
  /** Required bearer key; absent = no auth. */
  key?: string;
  /** The auth middleware throws when a credential is presented (answers 500). */
  authThrows?: boolean;
  /** Answer 401 without a WWW-Authenticate header. */
  noChallenge?: boolean;
  tools?: ToolDef[];
}

export interface SdkTestServer extends TestServer {
  /** Replace the tool list (new sessions see the new list). */
  setTools(tools: ToolDef[]): void;
  /** Sessions still open on the server. */
  openSessions(): number;
}

export const DEFAULT_TOOLS: ToolDef[] = [
  { name: "echo", description: "Echo a message back", field: "message" },
  { name: "add", description: "Add two numbers", field: "a" },
];

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

function closer(server: Server): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : undefined;
}

/** A 2025-era MCP server: the 1.x SDK's McpServer + stateful StreamableHTTPServerTransport behind a bearer check. */
export async function startSdkServer(opts: SdkServerOptions = {}): Promise<SdkTestServer> {
  let tools = opts.tools ?? DEFAULT_TOOLS;
  const transports = new Map<string, StreamableHTTPServerTransport>();

  function buildServer(): McpServer {
    const server = new McpServer({ name: "probe-test", version: "1.0.0" });
    for (const t of tools) {
      server.registerTool(
        t.name,
        { description: t.description, inputSchema: { [t.field]: z.string() } },
        async () => ({
          content: [{ type: "text", text: "ok" }],
        }),
      );
    }
    return server;
  }

  function checkAuth(req: IncomingMessage, res: ServerResponse): boolean {
    if (!opts.key && !opts.authThrows) return true;
    const header = req.headers.authorization;
    if (header && opts.authThrows) throw new Error("auth backend exploded");
    if (header === `Bearer ${opts.key}`) return true;
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (!opts.noChallenge)
      headers["www-authenticate"] = header
        ? 'Bearer realm="mcp", error="invalid_token"'
        : 'Bearer realm="mcp"';
    res.writeHead(401, headers).end(JSON.stringify({ error: "unauthorized" }));
    return false;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!checkAuth(req, res)) return;
    const sessionId = req.headers["mcp-session-id"];
    const body = req.method === "POST" ? await readJson(req) : undefined;
    let transport = typeof sessionId === "string" ? transports.get(sessionId) : undefined;
    if (!transport) {
      if (sessionId !== undefined) {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32001, message: "Session not found" } }));
        return;
      }
      if (req.method !== "POST" || !isInitializeRequest(body)) {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            jsonrpc: "2.0",
            error: { code: -32000, message: "Bad Request: No valid session ID provided" },
            id: null,
          }),
        );
        return;
      }
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, created);
        },
      });
      created.onclose = () => {
        if (created.sessionId) transports.delete(created.sessionId);
      };
      await buildServer().connect(created);
      transport = created;
    }
    await transport.handleRequest(req, res, body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "internal error" }));
    });
  });
  const port = await listen(server);
  const close = closer(server);
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    setTools(next) {
      tools = next;
    },
    openSessions: () => transports.size,
    async close() {
      for (const t of transports.values()) await t.close().catch(() => {});
      await close();
    },
  };
}

/** A 2026-07-28-only server (v2 SDK `createMcpHandler`, legacy rejected) behind a bearer check. */
export async function startModernServer(opts: { key: string; tools?: ToolDef[] }): Promise<TestServer> {
  const tools = opts.tools ?? DEFAULT_TOOLS;
  const handler = createMcpHandler(
    () => {
      const s = new McpServerV2({ name: "probe-test-2026", version: "2.0.0" });
      for (const t of tools) {
        s.registerTool(
          t.name,
          { description: t.description, inputSchema: z.object({ [t.field]: z.string() }) },
          async () => ({
            content: [{ type: "text", text: "ok" }],
          }),
        );
      }
      return s;
    },
    { legacy: "reject" },
  );
  const server = createServer(async (req, res) => {
    if (req.headers.authorization !== `Bearer ${opts.key}`) {
      res.writeHead(401, { "www-authenticate": 'Bearer realm="mcp"' }).end();
      return;
    }
    await answerWithFetchHandler(req, res, (r) => handler.fetch(r));
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}/mcp`, port, close: closer(server) };
}

/** Accepts connections and requests, never answers. */
export async function startSilentServer(): Promise<TestServer> {
  const server = createServer(() => {});
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}/mcp`, port, close: closer(server) };
}

/** A plain web server: HTML 200 to everything. */
export async function startHtmlServer(): Promise<TestServer> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>hello</title><p>Not MCP");
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}/mcp`, port, close: closer(server) };
}

/** A port that was just free: nothing listens there. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  const port = await listen(server);
  await closer(server)();
  return `http://127.0.0.1:${port}/mcp`;
}
