import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as StreamableHTTPClientTransportV2,
} from "@modelcontextprotocol/client";
import { createMcpHandler, McpServer as McpServerV2 } from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as z from "zod";
import { messagesOf, rawPost } from "../helpers/client.js";
import { answerWithFetchHandler } from "../helpers/fetch-handler.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

/** A 2026-07-28 server (v2 SDK) counting the tool calls it runs. */
async function startModernUpstream(ran: string[]): Promise<{ url: string; close(): Promise<void> }> {
  const handler = createMcpHandler(
    () => {
      const s = new McpServerV2({ name: "modern", version: "2.0.0" });
      for (const name of ["echo", "delete_note", "Echo"]) {
        s.registerTool(name, { description: name, inputSchema: z.object({}) }, async () => {
          ran.push(name);
          return { content: [{ type: "text", text: `ran ${name}` }] };
        });
      }
      return s;
    },
    { legacy: "reject" },
  );
  const server: Server = createServer((req, res) =>
    answerWithFetchHandler(req, res, (r) => handler.fetch(r)),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe("per-caller lists in the 2026-07-28 era (v2 SDK client and server)", () => {
  const ran: string[] = [];
  let modern: Awaited<ReturnType<typeof startModernUpstream>>;
  let gw: TestGateway;
  const key = "static-test-key-0123456789abcdef0123456789";
  const auth = { authorization: `Bearer ${key}` };

  beforeAll(async () => {
    modern = await startModernUpstream(ran);
    gw = await startTestGateway(
      {
        upstream: { url: modern.url },
        auth: { staticKey: { scopes: ["tools:call"] } },
        policy: {
          tools: [
            { match: "delete_*", scopes: ["admin"] },
            { match: "echo", scopes: ["tools:call"] },
          ],
        },
      },
      { MCP_API_KEY: key },
    );
  });
  afterAll(async () => {
    await gw?.close();
    await modern?.close();
  });

  it("filters tools/list and marks the result cacheScope private", async () => {
    const r = await rawPost(
      gw.url,
      {
        jsonrpc: "2.0",
        id: 2,
        method: "tools/list",
        params: {
          _meta: {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": { name: "raw", version: "1" },
          },
        },
      },
      { ...auth, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list" },
    );
    expect(r.status, r.text).toBe(200);
    const result = messagesOf(r.text)[0]!.result as { tools: Array<{ name: string }>; cacheScope?: string };
    expect(result.tools.map((t) => t.name)).toEqual(["echo"]);
    expect(result.cacheScope).toBe("private");
  });

  it("shows the v2 client only what it may call, and refuses the rest before the upstream", async () => {
    const client = new ClientV2(
      { name: "modern-client", version: "2.0.0" },
      { versionNegotiation: { mode: { pin: "2026-07-28" } } },
    );
    await client.connect(
      new StreamableHTTPClientTransportV2(new URL(gw.url), { requestInit: { headers: auth } }),
    );
    try {
      expect((await client.listTools()).tools.map((t) => t.name)).toEqual(["echo"]);
      ran.length = 0;
      const denied = await client.callTool({ name: "delete_note", arguments: {} });
      expect(denied.isError).toBe(true);
      const lookalike = await client.callTool({ name: "Echo", arguments: {} });
      expect(lookalike.isError).toBe(true);
      expect(JSON.stringify((await client.callTool({ name: "echo", arguments: {} })).content)).toContain(
        "ran echo",
      );
      expect(ran).toEqual(["echo"]);
    } finally {
      await client.close();
    }
  });
});
