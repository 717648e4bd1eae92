import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { issueApiKey } from "../src/authn/key-lifecycle.js";
import { createApiKeyVerifier } from "../src/authn/stored-key.js";
import { compilePolicy } from "../src/authz/policy.js";
import { mcpAuth } from "../src/http/express.js";
import { withPolicy } from "../src/sdk.js";
import { createMemoryKeyStore } from "../src/stores/memory-keys.js";
import { connectClient, messagesOf } from "./helpers/client.js";

const POLICY = {
  tools: [
    { match: "delete_*", scopes: ["admin"] },
    { match: "*", scopes: ["tools:call"] },
  ],
  resources: [{ match: "notes://*", scopes: ["tools:call"] }],
  prompts: [{ match: "*", scopes: ["admin"] }],
};

describe("mcpgate/sdk: the policy inside an SDK McpServer behind mcpgate/express", () => {
  let server: Server;
  let url: string;
  const ran: string[] = [];
  const keys: Record<string, string> = {};
  let onDenied: "auto" | "step-up" = "auto";

  function makeServer(): McpServer {
    const mcp = new McpServer({ name: "embedded", version: "1.0.0" });
    withPolicy(mcp, { ...POLICY, onDenied });
    for (const name of ["echo", "delete_note"]) {
      mcp.registerTool(name, { inputSchema: { x: z.string().optional() } }, async () => {
        ran.push(name);
        return { content: [{ type: "text", text: `ran ${name}` }] };
      });
    }
    mcp.registerResource("notes", "notes://all", {}, async (uri) => ({
      contents: [{ uri: uri.href, text: "n" }],
    }));
    mcp.registerResource("secret", "secret://x", {}, async (uri) => {
      ran.push("secret");
      return { contents: [{ uri: uri.href, text: "s" }] };
    });
    mcp.registerPrompt("summarize", {}, async () => ({
      messages: [{ role: "user", content: { type: "text", text: "s" } }],
    }));
    return mcp;
  }

  beforeAll(async () => {
    const store = createMemoryKeyStore();
    await store.init();
    keys.reader = (await issueApiKey(store, { name: "reader", scopes: ["tools:call"] })).key;
    keys.admin = (await issueApiKey(store, { name: "admin", scopes: ["tools:*", "admin"] })).key;
    keys.none = (await issueApiKey(store, { name: "none", scopes: [] })).key;
    const app = express();
    app.use(
      "/mcp",
      mcpAuth({ verifiers: [createApiKeyVerifier({ store })], publicUrl: "http://127.0.0.1:1/mcp" }),
    );
    // The same policy also given to the middleware (HTTP-level decisions before the SDK runs).
    app.use(
      "/gated",
      mcpAuth({
        verifiers: [createApiKeyVerifier({ store })],
        publicUrl: "http://127.0.0.1:1/gated",
        authorizer: compilePolicy(POLICY),
      }),
    );
    app.all(["/mcp", "/gated"], async (req, res) => {
      const mcp = makeServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on("close", () => {
        void transport.close();
        void mcp.close();
      });
      await mcp.connect(transport);
      await transport.handleRequest(req, res, (req as unknown as { body?: unknown }).body);
    });
    server = app.listen(0, "127.0.0.1");
    await new Promise<void>((r) => server.once("listening", () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  });

  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => server?.close(() => r()));
  });

  it("filters the tool, resource and prompt lists by the caller's scopes", async () => {
    const reader = (await connectClient(url, keys.reader)).client;
    const admin = (await connectClient(url, keys.admin)).client;
    const none = (await connectClient(url, keys.none)).client;
    try {
      expect((await reader.listTools()).tools.map((t) => t.name)).toEqual(["echo"]);
      expect((await admin.listTools()).tools.map((t) => t.name).sort()).toEqual(["delete_note", "echo"]);
      expect((await none.listTools()).tools).toEqual([]);
      expect((await reader.listResources()).resources.map((r) => r.uri)).toEqual(["notes://all"]);
      expect((await reader.listPrompts()).prompts).toEqual([]);
      expect((await admin.listPrompts()).prompts.map((p) => p.name)).toEqual(["summarize"]);
    } finally {
      await Promise.all([reader.close(), admin.close(), none.close()]);
    }
  });

  it("refuses a denied tool call with an isError result before the tool runs", async () => {
    const { client } = await connectClient(url, keys.reader);
    try {
      ran.length = 0;
      const r = await client.callTool({ name: "delete_note", arguments: {} });
      expect(r.isError).toBe(true);
      expect((r.content as Array<{ text: string }>)[0]!.text).toBe(
        'Forbidden: tool "delete_note" requires the scope: admin',
      );
      expect((await client.callTool({ name: "echo", arguments: {} })).content).toEqual([
        { type: "text", text: "ran echo" },
      ]);
      await expect(client.readResource({ uri: "secret://x" })).rejects.toThrow(/secret:\/\/x/);
      expect(ran).toEqual(["echo"]);
    } finally {
      await client.close();
    }
  });

  it("throws a JSON-RPC error naming the scopes with onDenied step-up", async () => {
    onDenied = "step-up";
    const { client } = await connectClient(url, keys.reader);
    try {
      ran.length = 0;
      const err = await client.callTool({ name: "delete_note", arguments: {} }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: -31001, data: { error: "insufficient_scope", scopes: ["admin"] } });
      expect(ran).toEqual([]);
    } finally {
      onDenied = "auto";
      await client.close();
    }
  });

  it("answers a batch as the gateway does: the refused call by the middleware, the rest by the server", async () => {
    ran.length = 0;
    const gated = url.replace(/\/mcp$/, "/gated");
    const res = await fetch(gated, {
      method: "POST",
      headers: {
        authorization: `Bearer ${keys.reader}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": "2025-03-26",
      },
      body: JSON.stringify([
        { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", arguments: {} } },
        { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "delete_note", arguments: {} } },
      ]),
    });
    expect(res.status).toBe(200);
    const body = messagesOf(await res.text()) as Array<{
      id: number;
      result?: { isError?: boolean; content?: Array<{ text: string }> };
    }>;
    const byId = new Map(body.map((m) => [m.id, m]));
    expect(byId.get(2)?.result?.isError).toBe(true);
    expect(byId.get(1)?.result?.content?.[0]?.text).toBe("ran echo");
    // The refused call never reached the server; the allowed one did.
    expect(ran).toEqual(["echo"]);
  });

  it("refuses to wrap a server whose handlers are already installed", () => {
    const mcp = new McpServer({ name: "late", version: "1.0.0" });
    mcp.registerTool("echo", {}, async () => ({ content: [] }));
    expect(() => withPolicy(mcp, compilePolicy(POLICY))).toThrow(/before registering/);
  });
});
