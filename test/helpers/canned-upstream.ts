import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** One request the canned upstream received. */
export interface CannedSeen {
  method: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** False when the body was not JSON (something the gateway should never forward). */
  json: boolean;
}

export interface CannedUpstream {
  url: string;
  seen: CannedSeen[];
  server: Server;
  /** Destroy every open connection (a crash, as the gateway sees it). */
  destroyConnections(): void;
  close(): Promise<void>;
}

/** Answer each JSON-RPC request in `body` with an empty (or tools) result, as JSON. */
function answer(res: ServerResponse, value: unknown): void {
  const items = Array.isArray(value) ? value : [value];
  const out = items
    .filter((m) => m && typeof m === "object" && "id" in m && typeof m.method === "string")
    .map((m) => ({
      jsonrpc: "2.0",
      id: m.id,
      result:
        m.method === "tools/list"
          ? { tools: [{ name: "echo", inputSchema: { type: "object" } }] }
          : m.method === "tools/call"
            ? { content: [{ type: "text", text: "ok" }] }
            : {},
    }));
  if (out.length === 0) {
    res.writeHead(202).end();
    return;
  }
  res
    .writeHead(200, { "content-type": "application/json", "mcp-session-id": "canned-session" })
    .end(JSON.stringify(Array.isArray(value) ? out : out[0]));
}

/**
 * A minimal MCP-shaped upstream on 127.0.0.1 that records every request and answers any JSON-RPC
 * request at once with a canned result. Unlike the SDK server it never throws on garbage (it
 * records it), so tests can assert that garbage never arrived.
 *
 * @example const up = await startCannedUpstream(); ... expect(up.seen.every((s) => s.json)).toBe(true);
 */
export async function startCannedUpstream(
  handler?: (req: CannedSeen, res: ServerResponse) => boolean,
): Promise<CannedUpstream> {
  const seen: CannedSeen[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      let value: unknown;
      let json = true;
      try {
        value = body ? JSON.parse(body) : undefined;
      } catch {
        json = false;
      }
      const entry = { method: req.method ?? "", headers: { ...req.headers }, body, json };
      seen.push(entry);
      if (handler?.(entry, res)) return;
      if (req.method !== "POST") {
        res.writeHead(405).end();
        return;
      }
      if (!json) {
        res.writeHead(400).end();
        return;
      }
      answer(res, value);
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    seen,
    server,
    destroyConnections() {
      for (const s of sockets) s.destroy();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
