import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import type { SdkAuthInfo } from "../../src/core/identity.js";
import { mcpAuth } from "../../src/http/express.js";
import { connectClient, INIT, rawPost } from "../helpers/client.js";

const KEY = "express-adapter-test-key-0123456789";

describe("mcpgate/express with an SDK McpServer", () => {
  let server: Server;
  let url: string;
  const seenAuth: Array<SdkAuthInfo | undefined> = [];

  beforeAll(async () => {
    const app = express();
    app.use(express.json());
    const auth = mcpAuth({
      verifiers: [createStaticKeyVerifier({ key: KEY, scopes: ["tools:call"] })],
      publicUrl: "http://127.0.0.1/mcp",
    });
    app.use("/mcp", auth);
    app.post("/mcp", async (req, res) => {
      const mcp = new McpServer({ name: "express-test", version: "1.0.0" });
      mcp.registerTool("whoami", { description: "Who is calling" }, async (extra) => {
        seenAuth.push(extra.authInfo as SdkAuthInfo | undefined);
        return { content: [{ type: "text" as const, text: String(extra.authInfo?.extra?.principal) }] };
      });
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: true,
      });
      res.on("close", () => void transport.close());
      await mcp.connect(transport);
      await transport.handleRequest(req, res, req.body);
    });
    await new Promise<void>((resolve) => {
      server = app.listen(0, "127.0.0.1", () => resolve());
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("delivers the verified identity to the tool handler as extra.authInfo", async () => {
    const { client } = await connectClient(url, KEY);
    const result = await client.callTool({ name: "whoami", arguments: {} });
    expect(result.content).toEqual([{ type: "text", text: "static" }]);
    const info = seenAuth.at(-1)!;
    expect(info.scopes).toEqual(["tools:call"]);
    expect(info.clientId).toBe("static");
    expect(info.extra?.displayPrefix).toMatch(/^static:[0-9a-f]{8}$/);
    // The display value is a fingerprint, never the first characters of the key.
    expect(String(info.extra?.displayPrefix)).not.toContain(KEY.slice(0, 6));
    await client.close();
  });

  it("answers 401 with the challenge before the SDK sees the request", async () => {
    const before = seenAuth.length;
    const res = await rawPost(url, INIT, { authorization: "Bearer wrong-key-wrong-key" });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(
      'Bearer realm="mcp", error="invalid_token", error_description="The access token is invalid"',
    );
    expect(seenAuth.length).toBe(before);
  });

  it("works after express.json() has parsed the body", async () => {
    const res = await rawPost(
      url,
      { jsonrpc: "2.0", id: 5, method: "tools/list" },
      { authorization: `Bearer ${KEY}` },
    );
    expect(res.status).toBe(200);
  });
});
