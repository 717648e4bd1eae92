import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import { createDemoMcpServer } from "../../src/cli/demo-server.js";
import { type AuthenticatedRequest, createNodeMcpAuth } from "../../src/http/node.js";
import { connectClient, INIT, rawPost, rawStatusLine } from "../helpers/client.js";

const KEY = "node-adapter-test-key-0123456789";

describe("mcpgate/node with a session-keeping SDK server", () => {
  let server: Server;
  let url: string;

  beforeAll(async () => {
    const transports = new Map<string, StreamableHTTPServerTransport>();
    let auth: ReturnType<typeof createNodeMcpAuth>;
    server = createServer(async (req, res) => {
      if (!(await auth(req, res))) return;
      const sid = req.headers["mcp-session-id"] as string | undefined;
      let t = sid ? transports.get(sid) : undefined;
      if (!t) {
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => void transports.set(id, created),
        });
        await createDemoMcpServer().connect(created);
        t = created;
      }
      await t.handleRequest(req, res, (req as AuthenticatedRequest).body);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
    auth = createNodeMcpAuth({ verifiers: [createStaticKeyVerifier({ key: KEY })], publicUrl: url });
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("lets an authenticated SDK client through and keeps its session", async () => {
    const { client, transport } = await connectClient(url, KEY);
    expect(transport.sessionId).toBeTruthy();
    const r = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    expect(r.content).toEqual([{ type: "text", text: "2" }]);
    await client.close();
  });

  it("answers 401 without a credential and 404 on the PRM paths in key-only mode", async () => {
    expect((await rawPost(url, INIT)).status).toBe(401);
    const prm = await fetch(new URL("/.well-known/oauth-protected-resource/mcp", url));
    expect(prm.status).toBe(404);
  });

  it("answers 413 for a body over the limit without handing it to the SDK", async () => {
    const line = await rawStatusLine(
      url,
      { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      "x".repeat(5 * 1024 * 1024),
    );
    expect(line).toBe("HTTP/1.1 413 Payload Too Large");
  });
});
