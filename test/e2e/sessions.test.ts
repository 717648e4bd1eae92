import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as StreamableHTTPClientTransportV2,
} from "@modelcontextprotocol/client";
import { createMcpHandler, McpServer as McpServerV2 } from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as z from "zod";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { type JwksServer, makeKey, mint, startJwksServer, type TestKey } from "../authn/jwks-fixture.js";
import { connectClient, INIT, messagesOf, rawPost } from "../helpers/client.js";
import { answerWithFetchHandler } from "../helpers/fetch-handler.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ISSUER = "http://127.0.0.1/test-issuer";
const AUDIENCE = "urn:mcpgate:sessions-test";

/** Requests the upstream received after index `from`, as `tools/call:<name>`-style strings. */
function callsSince(up: RecordingUpstream, from: number): string[] {
  const all = up.rpcCalls();
  return all.slice(from);
}

async function waitForAudit(
  path: string,
  type: string,
  timeoutMs = 3000,
): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let lines: Record<string, unknown>[] = [];
    try {
      lines = readFileSync(path, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    } catch {}
    const hits = lines.filter((l) => l.type === type);
    if (hits.length > 0 || Date.now() > deadline) return hits;
    await sleep(50);
  }
}

describe("identity-bound sessions through the gateway (2025 era, SDK 1.x client)", () => {
  let dir: string;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  let shortGw: TestGateway;
  let jwks: JwksServer;
  let signer: TestKey;
  let keyA: string;
  let keyB: string;
  let displayA: string;
  let displayB: string;
  let auditPath: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-sessions-"));
    const storeLocation = `sqlite:${join(dir, "keys.db")}`;
    const store = await openKeyStore(storeLocation);
    const a = await issueApiKey(store, { name: "alice-key" });
    const b = await issueApiKey(store, { name: "bob-key" });
    await store.close();
    keyA = a.key;
    keyB = b.key;
    displayA = `mcpg_${a.record.id}`;
    displayB = `mcpg_${b.record.id}`;
    signer = await makeKey("ES256", "k1");
    jwks = await startJwksServer([signer.jwk]);
    upstream = await startRecordingUpstream();
    auditPath = join(dir, "audit.jsonl");
    const auth = {
      apiKeys: { store: storeLocation },
      jwt: { issuer: ISSUER, audience: AUDIENCE, jwksUri: jwks.url, algorithms: ["ES256"] },
    };
    gw = await startTestGateway({ upstream: { url: upstream.url }, auth, logging: { audit: auditPath } });
    shortGw = await startTestGateway({
      upstream: { url: upstream.url },
      auth,
      sessions: { idleTtl: "400ms" },
    });
  });

  afterAll(async () => {
    await gw?.close();
    await shortGw?.close();
    await upstream?.close();
    await jwks?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const token = (sub: string) =>
    mint(signer, {
      iss: ISSUER,
      aud: AUDIENCE,
      sub,
      iat: Math.floor(Date.now() / 1000),
      exp: Math.floor(Date.now() / 1000) + 300,
      jti: `${sub}-${Math.random()}`,
    });

  describe("404s: a session used by another principal, or no longer live", () => {
    it("answers 404 to key B using key A's session, forwards nothing, and audits both display prefixes", async () => {
      const { client, transport } = await connectClient(gw.url, keyA);
      const sid = transport.sessionId!;
      expect(sid).toBeTruthy();
      expect((await client.callTool({ name: "echo", arguments: { message: "mine" } })).content).toBeTruthy();
      const before = upstream.seen.length;
      const stolen = await rawPost(
        gw.url,
        {
          jsonrpc: "2.0",
          id: 7,
          method: "tools/call",
          params: { name: "echo", arguments: { message: "x" } },
        },
        { authorization: `Bearer ${keyB}`, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" },
      );
      expect(stolen.status).toBe(404);
      expect(JSON.stringify(stolen.json())).not.toContain("mine");
      // GET (the session's SSE stream) and DELETE are refused the same way.
      for (const method of ["GET", "DELETE"]) {
        const r = await fetch(gw.url, {
          method,
          headers: { authorization: `Bearer ${keyB}`, "mcp-session-id": sid, accept: "text/event-stream" },
        });
        expect(r.status).toBe(404);
        await r.body?.cancel();
      }
      expect(upstream.seen.length).toBe(before);
      const events = await waitForAudit(auditPath, "session_mismatch");
      expect(events.length).toBeGreaterThan(0);
      expect(events.at(-1)).toMatchObject({ actor: displayB, other: displayA });
      expect(JSON.stringify(events)).not.toContain(sid); // only a redacted prefix is logged
      // The owner is unaffected.
      expect(
        (await client.callTool({ name: "echo", arguments: { message: "still mine" } })).isError,
      ).toBeFalsy();
      await client.close();
    });

    it("answers 404 to an id that was never minted, without asking the upstream", async () => {
      const before = upstream.seen.length;
      const r = await rawPost(
        gw.url,
        { jsonrpc: "2.0", id: 1, method: "tools/list" },
        { authorization: `Bearer ${keyA}`, "mcp-session-id": "00000000-0000-4000-8000-000000000000" },
      );
      expect(r.status).toBe(404);
      expect(upstream.seen.length).toBe(before);
    });

    it("answers 404 after DELETE: the binding is gone and the reuse never reaches the upstream", async () => {
      const { client, transport } = await connectClient(gw.url, keyA);
      const sid = transport.sessionId!;
      await transport.terminateSession();
      const before = upstream.seen.length;
      const reuse = await rawPost(
        gw.url,
        { jsonrpc: "2.0", id: 3, method: "tools/list" },
        { authorization: `Bearer ${keyA}`, "mcp-session-id": sid },
      );
      expect(reuse.status).toBe(404);
      expect(upstream.seen.length).toBe(before);
      await client.close();
    });

    it("answers 404 once the idle TTL has passed, and keeps a session alive while it is used", async () => {
      const { client, transport } = await connectClient(shortGw.url, keyA);
      for (let i = 0; i < 4; i++) {
        await sleep(200); // 800 ms in total, more than the 400 ms TTL, but never 400 ms idle
        expect((await client.callTool({ name: "echo", arguments: { message: `${i}` } })).isError).toBeFalsy();
      }
      await sleep(600);
      const before = upstream.seen.length;
      const late = await rawPost(
        shortGw.url,
        { jsonrpc: "2.0", id: 9, method: "tools/list" },
        { authorization: `Bearer ${keyA}`, "mcp-session-id": transport.sessionId! },
      );
      expect(late.status).toBe(404);
      expect(upstream.seen.length).toBe(before);
      await client.close().catch(() => {});
    });

    it("checks a session id sent with initialize too (a 2025-03-26 batch cannot ride another's session)", async () => {
      const { client, transport } = await connectClient(gw.url, keyA);
      const before = upstream.seen.length;
      const r = await rawPost(
        gw.url,
        [
          { ...INIT, params: { ...INIT.params, protocolVersion: "2025-03-26" } },
          {
            jsonrpc: "2.0",
            id: 2,
            method: "tools/call",
            params: { name: "echo", arguments: { message: "x" } },
          },
        ],
        { authorization: `Bearer ${keyB}`, "mcp-session-id": transport.sessionId! },
      );
      expect(r.status).toBe(404);
      expect(upstream.seen.length).toBe(before);
      await client.close();
    });
  });

  describe("400: a session-minting upstream needs the id", () => {
    it("answers 400 to a non-initialize request without Mcp-Session-Id once the upstream minted sessions", async () => {
      const { client } = await connectClient(gw.url, keyA);
      const before = upstream.seen.length;
      const r = await rawPost(
        gw.url,
        { jsonrpc: "2.0", id: 5, method: "tools/list" },
        { authorization: `Bearer ${keyA}` },
      );
      expect(r.status).toBe(400);
      expect(upstream.seen.length).toBe(before);
      await client.close();
    });
  });

  describe("binding is to the principal, not the token", () => {
    it("keeps the session when the client refreshes its token (same iss and sub), and refuses another sub", async () => {
      const headers: Record<string, string> = { Authorization: `Bearer ${await token("alice")}` };
      const { StreamableHTTPClientTransport } = await import(
        "@modelcontextprotocol/sdk/client/streamableHttp.js"
      );
      const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
      // The transport reads requestInit.headers on every request: replacing the value is a refresh.
      const transport = new StreamableHTTPClientTransport(new URL(gw.url), { requestInit: { headers } });
      const client = new Client({ name: "refreshing-client", version: "1.0.0" });
      await client.connect(transport);
      const sid = transport.sessionId!;
      headers.Authorization = `Bearer ${await token("alice")}`;
      const r = await client.callTool({ name: "echo", arguments: { message: "after refresh" } });
      expect(JSON.stringify(r.content)).toContain("after refresh");
      expect(transport.sessionId).toBe(sid);

      const mark = upstream.rpcCalls().length;
      headers.Authorization = `Bearer ${await token("mallory")}`;
      await expect(client.callTool({ name: "echo", arguments: { message: "hijack" } })).rejects.toMatchObject(
        {
          code: 404,
        },
      );
      expect(callsSince(upstream, mark)).toEqual([]);

      headers.Authorization = `Bearer ${await token("alice")}`;
      const again = await client.callTool({ name: "echo", arguments: { message: "alice again" } });
      expect(JSON.stringify(again.content)).toContain("alice again");
      await client.close();
    });
  });
});

/** A 2026-07-28 server (v2 SDK) that records the headers it receives. */
async function startModernUpstream(): Promise<{
  url: string;
  seen: IncomingHttpHeaders[];
  close(): Promise<void>;
}> {
  const seen: IncomingHttpHeaders[] = [];
  const handler = createMcpHandler(
    () => {
      const s = new McpServerV2({ name: "modern", version: "2.0.0" });
      s.registerTool(
        "echo",
        { description: "Echo", inputSchema: z.object({ text: z.string() }) },
        async ({ text }) => ({
          content: [{ type: "text", text: `echo: ${text}` }],
        }),
      );
      return s;
    },
    { legacy: "reject" },
  );
  const server: Server = createServer(async (req, res) => {
    seen.push({ ...req.headers });
    await answerWithFetchHandler(req, res, (r) => handler.fetch(r));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe("2026-07-28 (stateless) requests through the gateway (v2 client)", () => {
  let modern: Awaited<ReturnType<typeof startModernUpstream>>;
  let gw: TestGateway;
  const key = "static-test-key-0123456789abcdef0123456789";

  beforeAll(async () => {
    modern = await startModernUpstream();
    gw = await startTestGateway({ upstream: { url: modern.url } }, { MCP_API_KEY: key });
  });
  afterAll(async () => {
    await gw?.close();
    await modern?.close();
  });

  it("serves a 2026-era client without binding any session", async () => {
    const client = new ClientV2(
      { name: "modern-client", version: "2.0.0" },
      { versionNegotiation: { mode: { pin: "2026-07-28" } } },
    );
    const transport = new StreamableHTTPClientTransportV2(new URL(gw.url), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    });
    await client.connect(transport);
    const r = await client.callTool({ name: "echo", arguments: { text: "stateless" } });
    expect(JSON.stringify(r.content)).toContain("echo: stateless");
    expect(await gw.gate.options.state!.sessionCount!()).toBe(0);
    expect(modern.seen.some((h) => h["mcp-protocol-version"] === "2026-07-28")).toBe(true);
    await client.close();
  });

  it("answers 400 with -32020 when Mcp-Name lies about the body, and forwards nothing", async () => {
    const before = modern.seen.length;
    const r = await rawPost(
      gw.url,
      {
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: {
          name: "echo",
          arguments: { text: "x" },
          _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28" },
        },
      },
      {
        authorization: `Bearer ${key}`,
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "delete_everything",
      },
    );
    expect(r.status).toBe(400);
    expect(messagesOf(r.text)[0]).toMatchObject({ error: { code: -32020 } });
    expect(modern.seen.length).toBe(before);
  });

  it("refuses a 2026-era request that carries Mcp-Session-Id (400) and forwards nothing", async () => {
    const before = modern.seen.length;
    const r = await rawPost(
      gw.url,
      {
        jsonrpc: "2.0",
        id: 2,
        method: "tools/list",
        params: { _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } },
      },
      {
        authorization: `Bearer ${key}`,
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/list",
        "mcp-session-id": "someone-elses-session",
      },
    );
    // mcp/era.ts decideEra: a session id has no meaning in 2026-07-28; carrying one is an error,
    // never a session check skipped.
    expect(r.status).toBe(400);
    expect(modern.seen.length).toBe(before);
  });

  it("passes GET and DELETE of a 2026-era request to the upstream and relays its answer", async () => {
    for (const method of ["GET", "DELETE"]) {
      const before = modern.seen.length;
      const direct = await fetch(modern.url, {
        method,
        headers: { "mcp-protocol-version": "2026-07-28", accept: "text/event-stream" },
      });
      await direct.body?.cancel();
      const viaGateway = await fetch(gw.url, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          "mcp-protocol-version": "2026-07-28",
          accept: "text/event-stream",
        },
      });
      await viaGateway.body?.cancel();
      expect(viaGateway.status).toBe(direct.status);
      expect(modern.seen.length).toBe(before + 2);
    }
  });
});
