import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as z from "zod";
import { validateConfig } from "../../src/config.js";
import { type RunningGateway, startGateway } from "../../src/gateway/assembly/assemble.js";
import { createLogger } from "../../src/observe/logger.js";
import { deadUrl, makeKey, mint } from "../authn/jwks-fixture.js";
import { type AuthServer, startAuthServer } from "../authn/oidc-fixture.js";

/** A stateless MCP server (official 1.x SDK) that records the headers of every request it receives. */
async function startUpstream(): Promise<{ url: string; seen: IncomingHttpHeaders[]; stop(): Promise<void> }> {
  const seen: IncomingHttpHeaders[] = [];
  const server: Server = createServer(async (req, res) => {
    seen.push({ ...req.headers });
    const mcp = new McpServer({ name: "upstream", version: "1.0.0" });
    mcp.registerTool(
      "echo",
      { description: "Echo text", inputSchema: { text: z.string() } },
      async ({ text }) => ({
        content: [{ type: "text", text: `echo: ${text}` }],
      }),
    );
    mcp.registerTool("admin_reset", { description: "Needs the admin scope" }, async () => ({
      content: [{ type: "text", text: "reset done" }],
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on("close", () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    seen,
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe("OAuth end to end: oidc-provider → official SDK client → mcpgate → SDK server", () => {
  let as: AuthServer;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let gw: RunningGateway;
  const logLines: string[] = [];

  beforeAll(async () => {
    as = await startAuthServer({ format: "jwt", scopes: ["tools:call", "admin"] });
    upstream = await startUpstream();
    const config = validateConfig(
      {
        listen: { host: "127.0.0.1", port: 0 },
        upstream: { url: upstream.url },
        auth: { jwt: { issuer: as.issuer } },
        logging: { level: "debug" },
      },
      {},
    );
    const logger = createLogger({
      level: "debug",
      destination: { write: (line: string) => logLines.push(line) },
    });
    gw = await startGateway({ config, env: {}, logger });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.stop();
    await as?.stop();
  });

  it("serves the protected resource metadata naming the issuer, and names it in every 401", async () => {
    const prmUrl = new URL("/.well-known/oauth-protected-resource/mcp", gw.url).href;
    const prm = (await (await fetch(prmUrl)).json()) as Record<string, unknown>;
    expect(prm.resource).toBe(gw.publicUrl);
    expect(prm.authorization_servers).toEqual([as.issuer]);

    const res = await fetch(gw.url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(res.status).toBe(401);
    const challenge = res.headers.get("www-authenticate") ?? "";
    expect(challenge).toMatch(/^Bearer /);
    expect(challenge).toContain(`resource_metadata="${prmUrl}"`);
    expect(challenge).not.toContain("error=");
  });

  it("answers 401 invalid_token for a token issued for another resource, without echoing it", async () => {
    const token = await as.token("http://127.0.0.1:1/somewhere-else");
    const res = await fetch(gw.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
    const body = await res.text();
    expect(body).not.toContain(token);
    // The refusal was logged (so the check below looks at real lines), without the token.
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join("\n")).not.toContain(token.split(".")[2]);
  });

  it("lets the SDK client initialize and call a tool with a token from the authorization server", async () => {
    const token = await as.token(gw.publicUrl, "tools:call");
    const before = upstream.seen.length;
    const client = new Client({ name: "e2e", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(gw.url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    await client.connect(transport);
    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name)).toContain("echo");
    const result = await client.callTool({ name: "echo", arguments: { text: "hi" } });
    expect(result.content).toEqual([{ type: "text", text: "echo: hi" }]);
    await client.close();

    // Token passthrough is forbidden: the upstream never sees the caller's token.
    const forwarded = upstream.seen.slice(before);
    expect(forwarded.length).toBeGreaterThanOrEqual(3);
    for (const headers of forwarded) {
      expect(headers.authorization).toBeUndefined();
      expect(JSON.stringify(headers)).not.toContain(token.split(".")[2]);
    }
    expect(logLines.join("\n")).not.toContain(token.split(".")[2]);
  });

  it("lets an SDK client with an OAuthClientProvider discover the PRM and the AS metadata, get a token, and call a tool", async () => {
    const requested: string[] = [];
    const recordingFetch: typeof fetch = (input, init) => {
      const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      requested.push(`${init?.method ?? "GET"} ${url}`);
      return fetch(input, init);
    };
    const provider = new ClientCredentialsProvider({
      clientId: as.client.id,
      clientSecret: as.client.secret,
      scope: "tools:call",
      expectedIssuer: as.issuer,
    });
    const client = new Client({ name: "e2e-oauth", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(gw.url), {
      authProvider: provider,
      fetch: recordingFetch,
    });
    const asBefore = as.paths.length;
    await client.connect(transport);
    const result = await client.callTool({ name: "echo", arguments: { text: "via oauth" } });
    expect(result.content).toEqual([{ type: "text", text: "echo: via oauth" }]);
    await client.close();

    const prm = new URL("/.well-known/oauth-protected-resource/mcp", gw.url).href;
    // The discovery sequence: a refused POST, the PRM (named in resource_metadata), the AS
    // metadata (RFC 8414 first), the token request, then the retried POST.
    expect(requested.slice(0, 5)).toEqual([
      `POST ${gw.url}`,
      `GET ${prm}`,
      `GET ${as.issuer}/.well-known/oauth-authorization-server`,
      `POST ${as.tokenEndpoint}`,
      `POST ${gw.url}`,
    ]);
    expect(as.paths.slice(asBefore)).toContain("/token");
    const token = provider.tokens()?.access_token;
    expect(token).toBeTruthy();
    expect(JSON.stringify(upstream.seen)).not.toContain(token!.split(".")[2]);
  });
});

describe("step-up: a tool needing a scope the token lacks answers 403 insufficient_scope", () => {
  let as: AuthServer;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let gw: RunningGateway;

  beforeAll(async () => {
    as = await startAuthServer({ format: "jwt", scopes: ["tools:call", "admin"] });
    upstream = await startUpstream();
    const config = validateConfig(
      {
        listen: { host: "127.0.0.1", port: 0 },
        upstream: { url: upstream.url },
        auth: { jwt: { issuer: as.issuer } },
        policy: {
          default: "deny",
          tools: [
            { match: "admin_*", scopes: ["admin", "tools:call"] },
            { match: "*", scopes: ["tools:call"] },
          ],
        },
        logging: { level: "silent" },
      },
      {},
    );
    gw = await startGateway({ config, env: {} });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.stop();
    await as?.stop();
  });

  async function connect(
    token: string,
  ): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
    const client = new Client({ name: "step-up", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(gw.url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    await client.connect(transport);
    return { client, transport };
  }

  it("challenges with every scope the call needs and the PRM, then accepts the stepped-up token", async () => {
    const narrow = await as.token(gw.publicUrl, "tools:call");
    const { client, transport } = await connect(narrow);
    expect((await client.callTool({ name: "echo", arguments: { text: "ok" } })).isError).toBeFalsy();
    const before = upstream.seen.length;

    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      authorization: `Bearer ${narrow}`,
      "mcp-protocol-version": transport.protocolVersion ?? "2025-11-25",
    };
    if (transport.sessionId) headers["mcp-session-id"] = transport.sessionId;
    const res = await fetch(gw.url, {
      method: "POST",
      headers,
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 7,
        method: "tools/call",
        params: { name: "admin_reset", arguments: {} },
      }),
    });
    expect(res.status).toBe(403);
    const challenge = res.headers.get("www-authenticate") ?? "";
    expect(challenge).toContain('error="insufficient_scope"');
    expect(challenge).toMatch(/scope="(admin tools:call|tools:call admin)"/);
    expect(challenge).toContain(
      `resource_metadata="${new URL("/.well-known/oauth-protected-resource/mcp", gw.url).href}"`,
    );
    // Refused before the upstream: nothing was forwarded for the denied call.
    expect(upstream.seen.length).toBe(before);
    await client.close();

    const wide = await as.token(gw.publicUrl, "tools:call admin");
    const stepped = await connect(wide);
    const r = await stepped.client.callTool({ name: "admin_reset", arguments: {} });
    expect(r.content).toEqual([{ type: "text", text: "reset done" }]);
    await stepped.client.close();
  });

  it("advertises the policy's scopes in the PRM scopes_supported", async () => {
    const prm = (await (
      await fetch(new URL("/.well-known/oauth-protected-resource/mcp", gw.url))
    ).json()) as {
      scopes_supported?: string[];
    };
    expect([...(prm.scopes_supported ?? [])].sort()).toEqual(["admin", "tools:call"]);
  });
});

describe("an unreachable JWKS through the gateway", () => {
  it("answers 401 invalid_token (never 500) and keeps serving", async () => {
    const upstream = await startUpstream();
    const issuer = "https://as.unreachable.example";
    const config = validateConfig(
      {
        listen: { host: "127.0.0.1", port: 0 },
        upstream: { url: upstream.url },
        auth: { jwt: { issuer, jwksUri: await deadUrl(), jwksTimeout: "1s" } },
        logging: { level: "silent" },
      },
      {},
    );
    const gw = await startGateway({ config, env: {} });
    try {
      const key = await makeKey("RS256", "k1");
      const now = Math.floor(Date.now() / 1000);
      const token = await mint(key, { iss: issuer, aud: gw.publicUrl, sub: "u", exp: now + 60 });
      for (let i = 0; i < 3; i++) {
        const res = await fetch(gw.url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            authorization: `Bearer ${token}`,
          },
          body: JSON.stringify({ jsonrpc: "2.0", id: i, method: "tools/list" }),
        });
        expect(res.status).toBe(401);
        expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
      }
      const prm = await fetch(new URL("/.well-known/oauth-protected-resource", gw.url));
      expect(prm.status).toBe(200);
      expect(upstream.seen.length).toBe(0);
    } finally {
      await gw.close();
      await upstream.stop();
    }
  });
});
