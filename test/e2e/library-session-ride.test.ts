import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { createApiKeyVerifier } from "../../src/authn/stored-key.js";
import { mcpAuth } from "../../src/http/express.js";
import { type AuthenticatedRequest, createNodeMcpAuth } from "../../src/http/node.js";
import { createMemoryKeyStore } from "../../src/stores/memory-keys.js";
import { connectClient, messagesOf, rawPost } from "../helpers/client.js";

/**
 * Issue 14 item 8 in library mode: B sends A's Mcp-Session-Id with a 2026-07-28 `_meta` marker
 * (no MCP-Protocol-Version header), alone and in a batch. The middleware must never hand the app
 * a session id the gate did not check: B's call must not run on A's session.
 */
const META = { "io.modelcontextprotocol/protocolVersion": "2026-07-28" };

/** A session-keeping SDK app: `note_set` stores a value in the session, `note_get` reads it back. */
function sessionApp() {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  return async (req: IncomingMessage, res: ServerResponse, body: unknown) => {
    const sid = req.headers["mcp-session-id"];
    let t = typeof sid === "string" ? transports.get(sid) : undefined;
    if (!t) {
      if (typeof sid === "string") {
        res
          .writeHead(404, { "content-type": "application/json" })
          .end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}');
        return;
      }
      let note = "";
      const mcp = new McpServer({ name: "notes", version: "1.0.0" });
      mcp.registerTool("note_set", { inputSchema: { value: z.string() } }, async ({ value }) => {
        note = value;
        return { content: [{ type: "text" as const, text: "ok" }] };
      });
      mcp.registerTool("note_get", {}, async (extra) => ({
        content: [
          { type: "text" as const, text: `note=${note} caller=${String(extra.authInfo?.extra?.principal)}` },
        ],
      }));
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: true,
        onsessioninitialized: (id) => void transports.set(id, created),
      });
      await mcp.connect(created);
      t = created;
    }
    await t.handleRequest(req, res, body);
  };
}

const apps: Array<{ name: string; start(verifiers: unknown[]): Promise<{ url: string; server: Server }> }> = [
  {
    name: "express (mcpgate/express)",
    async start(verifiers) {
      const app = express();
      app.use(express.json());
      const handle = sessionApp();
      app.use("/mcp", mcpAuth({ verifiers: verifiers as never, publicUrl: "http://127.0.0.1/mcp" }));
      app.all("/mcp", (req, res) => void handle(req, res, req.body));
      const server = await new Promise<Server>((r) => {
        const s = app.listen(0, "127.0.0.1", () => r(s));
      });
      return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp` };
    },
  },
  {
    name: "node:http (mcpgate/node)",
    async start(verifiers) {
      const handle = sessionApp();
      let auth: ReturnType<typeof createNodeMcpAuth>;
      const server = createServer(async (req, res) => {
        if (!(await auth(req, res))) return;
        await handle(req, res, (req as AuthenticatedRequest).body);
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
      auth = createNodeMcpAuth({ verifiers: verifiers as never, publicUrl: url });
      return { server, url };
    },
  },
];

for (const app of apps) {
  describe(`library mode, ${app.name}: a 2026 marker cannot ride another caller's session`, () => {
    let server: Server;
    let url: string;
    const keys: Record<string, string> = {};
    let sessionA: string;

    beforeAll(async () => {
      const store = createMemoryKeyStore();
      await store.init();
      keys.a = (await issueApiKey(store, { name: "a", scopes: [] })).key;
      keys.b = (await issueApiKey(store, { name: "b", scopes: [] })).key;
      ({ server, url } = await app.start([createApiKeyVerifier({ store })]));
      const { client, transport } = await connectClient(url, keys.a);
      await client.callTool({ name: "note_set", arguments: { value: "A-private" } });
      sessionA = transport.sessionId!;
      expect(sessionA).toBeTruthy();
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    });

    const call = (id: number, name: string) => ({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: { name, arguments: {}, _meta: META },
    });

    it("the owner reads its own note (the session works)", async () => {
      const res = await rawPost(
        url,
        { ...call(1, "note_get"), params: { name: "note_get", arguments: {} } },
        {
          authorization: `Bearer ${keys.a}`,
          "mcp-session-id": sessionA,
          "mcp-protocol-version": "2025-06-18",
        },
      );
      expect(res.text).toContain("note=A-private");
    });

    it("refuses B's call carrying A's session id and a 2026 _meta marker (alone)", async () => {
      const res = await rawPost(url, call(2, "note_get"), {
        authorization: `Bearer ${keys.b}`,
        "mcp-session-id": sessionA,
      });
      expect(res.text).not.toContain("A-private");
      expect([400, 404]).toContain(res.status);
    });

    it("refuses it in a batch, with only one element marked", async () => {
      const res = await rawPost(url, [call(3, "note_get"), { jsonrpc: "2.0", id: 4, method: "ping" }], {
        authorization: `Bearer ${keys.b}`,
        "mcp-session-id": sessionA,
        "mcp-protocol-version": "2025-03-26",
      });
      expect(res.text).not.toContain("A-private");
      expect([400, 404]).toContain(res.status);
      const both = await rawPost(url, [call(5, "note_get"), call(6, "note_get")], {
        authorization: `Bearer ${keys.b}`,
        "mcp-session-id": sessionA,
      });
      expect(both.text).not.toContain("A-private");
      expect([400, 404]).toContain(both.status);
      for (const m of both.status === 200 ? messagesOf(both.text) : []) expect(m.result).toBeUndefined();
    });
  });
}
