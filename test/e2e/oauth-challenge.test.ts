import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  ClientCredentialsProvider,
  Client as ClientV2,
  StreamableHTTPClientTransport as StreamableHTTPClientTransportV2,
} from "@modelcontextprotocol/client";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AuthServer, startAuthServer } from "../authn/oidc-fixture.js";
import { INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

/**
 * Issue 14 item 7: challenges that help. With a policy that has tool rules only, `resources/read`
 * is denied by default and no scope can change that: the v2 client must get a plain denial, not a
 * 403 step-up it re-authorizes for in a loop. And the first 401 asks for the least needed scope
 * (the catch-all rule's), not every scope of the policy.
 */
async function startUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer(async (req, res) => {
    const mcp = new McpServer({ name: "up", version: "1.0.0" });
    mcp.registerTool("echo", {}, async () => ({ content: [{ type: "text", text: "echoed" }] }));
    mcp.registerTool("admin_reset", {}, async () => ({ content: [{ type: "text", text: "reset" }] }));
    mcp.registerResource("doc", "file:///srv/doc.txt", {}, async (u) => ({
      contents: [{ uri: u.href, text: "doc" }],
    }));
    const t = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on("close", () => void t.close());
    await mcp.connect(t);
    await t.handleRequest(req, res);
  });
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

describe("challenges that help (v2 SDK client, real authorization server)", () => {
  let as: AuthServer;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let gw: TestGateway;

  beforeAll(async () => {
    as = await startAuthServer({ format: "jwt", scopes: ["tools:call", "admin"] });
    upstream = await startUpstream();
    gw = await startTestGateway({
      upstream: { url: upstream.url },
      auth: { jwt: { issuer: as.issuer } },
      policy: {
        tools: [
          { match: "admin_*", scopes: ["admin", "tools:call"] },
          { match: "*", scopes: ["tools:call"] },
        ],
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await as?.stop();
  });

  it("asks for the catch-all rule's scope at first login, not admin", async () => {
    const res = await rawPost(gw.url, INIT);
    expect(res.status).toBe(401);
    const challenge = res.headers.get("www-authenticate") ?? "";
    expect(challenge).toMatch(/scope="tools:call"/);
    expect(challenge).not.toContain("admin");
  });

  it("answers a read no scope can allow with a denial, and the client does not loop on step-up", async () => {
    const tokenRequests: string[] = [];
    const recordingFetch: typeof fetch = async (input, init) => {
      const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      if (url === as.tokenEndpoint) tokenRequests.push(String(init?.body ?? ""));
      return fetch(input, init);
    };
    const provider = new ClientCredentialsProvider({
      clientId: as.client.id,
      clientSecret: as.client.secret,
      expectedIssuer: as.issuer,
    });
    const client = new ClientV2({ name: "v2-oauth", version: "2.0.0" });
    await client.connect(
      new StreamableHTTPClientTransportV2(new URL(gw.url), { authProvider: provider, fetch: recordingFetch }),
    );
    try {
      expect(JSON.stringify((await client.callTool({ name: "echo", arguments: {} })).content)).toContain(
        "echoed",
      );
      const before = tokenRequests.length;
      const t0 = Date.now();
      await expect(client.readResource({ uri: "file:///srv/doc.txt" })).rejects.toThrow(
        /not allowed|Forbidden/,
      );
      expect(Date.now() - t0).toBeLessThan(5_000);
      // No re-authorization for a denial no scope can fix.
      expect(tokenRequests.length).toBe(before);
      // The first token asked for the least privilege.
      expect(new URLSearchParams(tokenRequests[0]).get("scope")).toBe("tools:call");
    } finally {
      await client.close();
    }
  });
});
