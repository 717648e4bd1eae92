import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

/**
 * The bundled demo MCP server: tools `echo`, `add`, `delete_note` (and `count`, which streams
 * progress notifications). It has no auth of its own: it is what mcpgate protects.
 */
export function createDemoMcpServer(): McpServer {
  const server = new McpServer({ name: "mcpgate-demo", version: "0.1.0" });
  const notes = new Map<string, string>([
    ["welcome", "Hello from the mcpgate demo"],
    ["todo", "Try delete_note with a key that lacks the admin scope"],
  ]);
  server.registerTool(
    "echo",
    { description: "Echo a message back", inputSchema: { message: z.string() } },
    async ({ message }) => ({ content: [{ type: "text", text: message }] }),
  );
  server.registerTool(
    "add",
    { description: "Add two numbers", inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }] }),
  );
  server.registerTool(
    "delete_note",
    { description: "Delete a note by name (an admin operation)", inputSchema: { name: z.string() } },
    async ({ name }) => ({
      content: [{ type: "text", text: notes.delete(name) ? `deleted ${name}` : `no note named ${name}` }],
    }),
  );
  server.registerTool(
    "count",
    {
      description: "Count to n, sending a progress notification per step",
      inputSchema: { n: z.number().int().min(1).max(100) },
    },
    async ({ n }, extra) => {
      const token = extra._meta?.progressToken;
      for (let i = 1; i <= n; i++) {
        if (token !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress: i, total: n },
          });
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      return { content: [{ type: "text", text: `counted to ${n}` }] };
    },
  );
  server.registerResource("notes", "notes://all", { description: "All notes" }, async (uri) => ({
    contents: [{ uri: uri.href, text: [...notes.entries()].map(([k, v]) => `${k}: ${v}`).join("\n") }],
  }));
  server.registerPrompt("summarize", { description: "Summarize the notes" }, async () => ({
    messages: [{ role: "user", content: { type: "text", text: "Summarize my notes." } }],
  }));
  return server;
}

export interface DemoHttpServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Serve the demo over Streamable HTTP (2025-era sessions) on 127.0.0.1. */
export async function startDemoHttpServer(port = 0, host = "127.0.0.1"): Promise<DemoHttpServer> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const server = createServer(async (req, res) => {
    if ((req.url ?? "").split("?")[0] !== "/mcp") {
      res.writeHead(404).end();
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
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, transport!);
        },
      });
      transport.onclose = () => {
        if (transport?.sessionId) transports.delete(transport.sessionId);
      };
      await createDemoMcpServer().connect(transport);
    }
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  const { port: actual } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${actual}/mcp`,
    server,
    async close() {
      for (const t of transports.values()) await t.close().catch(() => {});
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Serve the demo over stdio (for `mcpgate serve --stdio`). */
export async function runDemoStdioServer(): Promise<void> {
  await createDemoMcpServer().connect(new StdioServerTransport());
}
