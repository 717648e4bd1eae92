import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import type { Authorizer } from "../../src/core/contracts.js";
import { type AuthenticatedRequest, createNodeMcpAuth } from "../../src/http/node.js";
import { messagesOf, rawPost } from "../helpers/client.js";

/**
 * One batch semantic everywhere (issue 13 item 1): behind `mcpgate/node`, as behind the gateway, a
 * 2025-03-26 batch with a refused element gets the gate's answer for that element and the server's
 * answers for the rest, in one response — JSON or SSE, whichever the server writes.
 */
const KEY = "batch-test-key-0123456789abcdefgh";
const refuseSecret: Authorizer = {
  authorize: (_i, m) =>
    m.name === "secret" ? { allow: false, scopes: [], reason: "secret is not yours" } : { allow: true },
  filtersLists: () => false,
  isVisible: () => true,
  onDenied: () => "tool-error",
  scopesSupported: () => [],
};
const call = (id: number, name: string) => ({
  jsonrpc: "2.0",
  id,
  method: "tools/call",
  params: { name, arguments: {} },
});
const h = { authorization: `Bearer ${KEY}`, "mcp-protocol-version": "2025-03-26" };

describe.each([true, false])(
  "a batch with a refused element behind mcpgate/node (JSON response: %s)",
  (json) => {
    let server: Server;
    let url: string;
    const ran: string[] = [];

    beforeAll(async () => {
      const auth = createNodeMcpAuth({
        verifiers: [createStaticKeyVerifier({ key: KEY })],
        publicUrl: "http://127.0.0.1/mcp",
        authorizer: refuseSecret,
      });
      server = createServer(async (req, res) => {
        if (!(await auth(req, res))) return;
        const mcp = new McpServer({ name: "batch", version: "1.0.0" });
        for (const name of ["echo", "secret"])
          mcp.registerTool(name, {}, async () => {
            ran.push(name);
            return { content: [{ type: "text" as const, text: `ran ${name}` }] };
          });
        const transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: undefined,
          enableJsonResponse: json,
        });
        res.on("close", () => void transport.close());
        await mcp.connect(transport);
        await transport.handleRequest(req, res, (req as AuthenticatedRequest).body);
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    });

    it("answers the allowed element from the server and the refused one from the gate", async () => {
      ran.length = 0;
      const r = await rawPost(url, [call(1, "echo"), call(2, "secret")], h);
      expect(r.status).toBe(200);
      const byId = new Map(messagesOf(r.text).map((m) => [m.id, m]));
      expect((byId.get(1)!.result as { content: Array<{ text: string }> }).content[0]!.text).toBe("ran echo");
      expect((byId.get(2)!.result as { isError: boolean }).isError).toBe(true);
      expect(ran).toEqual(["echo"]);
    });

    it("answers 200 with the gate's answers when only notifications went on", async () => {
      ran.length = 0;
      const r = await rawPost(
        url,
        [{ jsonrpc: "2.0", method: "notifications/initialized" }, call(3, "secret")],
        h,
      );
      expect(r.status).toBe(200);
      const msgs = messagesOf(r.text);
      expect(msgs.map((m) => m.id)).toEqual([3]);
      expect(ran).toEqual([]);
    });
  },
);
