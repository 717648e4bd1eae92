import { randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { createDemoMcpServer } from "../../src/cli/demo-server.js";

/** What the upstream saw of one HTTP request. */
export interface SeenRequest {
  method: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface RecordingUpstream {
  url: string;
  seen: SeenRequest[];
  /** JSON-RPC methods of every message the upstream received (tools/call → "tools/call:<name>"). */
  rpcCalls(): string[];
  server: Server;
  close(): Promise<void>;
}

/**
 * A real SDK 1.x MCP server over Streamable HTTP (sessions on), recording every request's headers
 * and body before the SDK handles it. Tools: echo, add, delete_note, count (progress).
 */
export async function startRecordingUpstream(
  opts: { makeServer?: () => McpServer; stateless?: boolean; jsonResponse?: boolean } = {},
): Promise<RecordingUpstream> {
  const seen: SeenRequest[] = [];
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const make = opts.makeServer ?? createDemoMcpServer;
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    seen.push({ method: req.method ?? "", headers: { ...req.headers }, body });
    const parsed = body ? JSON.parse(body) : undefined;
    if (opts.stateless) {
      const t = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: opts.jsonResponse ?? false,
      });
      await make().connect(t);
      await t.handleRequest(req, res, parsed);
      return;
    }
    const sid = req.headers["mcp-session-id"];
    let transport = typeof sid === "string" ? transports.get(sid) : undefined;
    if (!transport) {
      if (typeof sid === "string") {
        res.writeHead(404, { "content-type": "application/json" }).end(
          JSON.stringify({
            jsonrpc: "2.0",
            error: { code: -32001, message: "Session not found" },
            id: null,
          }),
        );
        return;
      }
      const t = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: opts.jsonResponse ?? false,
        onsessioninitialized: (id) => {
          transports.set(id, t);
        },
      });
      t.onclose = () => {
        if (t.sessionId) transports.delete(t.sessionId);
      };
      await make().connect(t);
      transport = t;
    }
    await transport.handleRequest(req, res, parsed);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    seen,
    server,
    rpcCalls() {
      const out: string[] = [];
      for (const s of seen) {
        if (!s.body) continue;
        let v: unknown;
        try {
          v = JSON.parse(s.body);
        } catch {
          continue;
        }
        for (const m of Array.isArray(v) ? v : [v]) {
          if (m && typeof m === "object" && typeof m.method === "string") {
            out.push(m.method === "tools/call" ? `tools/call:${m.params?.name}` : m.method);
          }
        }
      }
      return out;
    },
    async close() {
      for (const t of transports.values()) await t.close().catch(() => {});
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
