import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { findFreePort } from "../../src/gateway/free-port.js";
import { probeEndpoint } from "../../src/probe/probe.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { verifyGatewayAssertion } from "../../src/upstream/index.js";
import { type AuthServer, startAuthServer } from "../authn/oidc-fixture.js";
import { TINY_SERVER } from "../gateway/stdio-helpers.js";
import { connectClient, INIT, messagesOf, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * Two real SDK-speaking upstreams behind one gateway (issue 15): `notes` over HTTP (the SDK's
 * Streamable HTTP server) and `files` over stdio (a child per session), each with its own policy,
 * both told who calls by a signed assertion.
 */
const RL_KEY = `upstreams-e2e-${Math.random().toString(36).slice(2)}-static-key`;
let dir: string;
let notes: RecordingUpstream;
let gw: TestGateway;
const keys: Record<string, { key: string; id: string }> = {};

/** The gateway's origin (its `url` names the one-upstream endpoint). */
const origin = () => new URL(gw.url).origin;
const textOf = (r: unknown) => (r as { content: Array<{ text: string }> }).content[0]!.text;

/** Verify an identity assertion the `files` stdio child got, as its SDK server would; it names the files key. */
async function filesAssertion(jwt: string) {
  const verifier = verifyGatewayAssertion({
    jwksUrl: `${origin()}/.well-known/jwks.json`,
    issuer: origin(),
    audience: "urn:mcpgate:upstream:files",
  });
  const info = await verifier.verifyAccessToken(jwt);
  expect(info.extra).toMatchObject({ principal: `key:${keys.files!.id}` });
  return info;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcpgate-upstreams-e2e-"));
  const store = `sqlite:${join(dir, "keys.db")}`;
  const ks = await openKeyStore(store);
  for (const [name, scopes] of [
    ["reader", ["tools:call"]],
    ["files", ["files"]],
  ] as const) {
    const issued = await issueApiKey(ks, { name, scopes: [...scopes], tenant: "acme" });
    keys[name] = { key: issued.key, id: issued.record.id };
  }
  await ks.close();
  notes = await startRecordingUpstream();
  gw = await startTestGateway({
    auth: { apiKeys: { store } },
    identity: { keyStore: store },
    upstreams: [
      {
        name: "notes",
        path: "/notes/mcp",
        url: notes.url,
        identity: { mode: "assertion" },
        policy: { tools: [{ match: "echo", scopes: ["tools:call"] }] },
      },
      {
        name: "files",
        path: "/files/mcp",
        command: TINY_SERVER,
        identity: { mode: "assertion" },
        policy: { tools: [{ match: "env", scopes: ["files"] }] },
      },
    ],
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await notes?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("several upstreams behind one gateway", () => {
  it("applies each upstream's own policy to tools/list and tools/call", async () => {
    const a = await connectClient(`${origin()}/notes/mcp`, keys.reader!.key);
    expect((await a.client.listTools()).tools.map((t) => t.name)).toEqual(["echo"]);
    expect(textOf(await a.client.callTool({ name: "echo", arguments: { message: "hi" } }))).toContain("hi");
    const b = await connectClient(`${origin()}/files/mcp`, keys.reader!.key);
    expect((await b.client.listTools()).tools).toEqual([]);
    const c = await connectClient(`${origin()}/files/mcp`, keys.files!.key);
    expect((await c.client.listTools()).tools.map((t) => t.name)).toEqual(["env"]);
    for (const x of [a, b, c]) await x.client.close();
  });

  it("never honours a session minted on one upstream's path on another's (404)", async () => {
    const init = await rawPost(`${origin()}/notes/mcp`, INIT, {
      authorization: `Bearer ${keys.reader!.key}`,
    });
    expect(init.status).toBe(200);
    const sid = init.headers.get("mcp-session-id")!;
    expect(sid).toBeTruthy();
    const cross = await rawPost(
      `${origin()}/files/mcp`,
      { jsonrpc: "2.0", id: 2, method: "tools/list" },
      {
        authorization: `Bearer ${keys.reader!.key}`,
        "mcp-session-id": sid,
        "mcp-protocol-version": "2025-06-18",
      },
    );
    expect(cross.status).toBe(404);
  });

  it("tells the HTTP upstream who calls with an assertion it can verify, never the caller's key", async () => {
    const { client } = await connectClient(`${origin()}/notes/mcp`, keys.reader!.key);
    await client.callTool({ name: "echo", arguments: { message: "who" } });
    await client.close();
    const verifier = verifyGatewayAssertion({
      jwksUrl: `${origin()}/.well-known/jwks.json`,
      issuer: origin(),
      audience: notes.url,
    });
    const forwarded = notes.seen.filter((s) => s.method === "POST");
    expect(forwarded.length).toBeGreaterThan(0);
    for (const s of forwarded) {
      const auth = String(s.headers.authorization ?? "");
      expect(auth).toMatch(/^Bearer eyJ/);
      const info = await verifier.verifyAccessToken(auth.slice(7));
      expect(info.extra).toMatchObject({
        principal: `key:${keys.reader!.id}`,
        kind: "api_key",
        tenant: "acme",
      });
    }
    const everything = JSON.stringify(notes.seen);
    for (const { key, id } of Object.values(keys)) {
      expect(everything).not.toContain(key);
      expect(everything).not.toContain(key.slice(-20)); // not even the secret part
      expect(id).toBeTruthy();
    }
  });

  it("gives the stdio child the assertion, subject and scopes, and no other secret", async () => {
    const { client } = await connectClient(`${origin()}/files/mcp`, keys.files!.key);
    const env = JSON.parse(textOf(await client.callTool({ name: "env", arguments: {} }))) as Record<
      string,
      string
    >;
    await client.close();
    expect(env.MCPGATE_SUBJECT).toBe(`key:${keys.files!.id}`);
    expect(env.MCPGATE_SCOPES).toBe("files");
    await filesAssertion(env.MCPGATE_IDENTITY!);
    const values = Object.values(env).join("\n");
    for (const { key } of Object.values(keys)) expect(values).not.toContain(key);
    expect(values).not.toMatch(/"d"\s*:/); // no private JWK
    const secretish = Object.keys(env).filter((k) => /KEY|SECRET|TOKEN|PASS/i.test(k));
    expect(secretish).toEqual([]);
  });

  it("gives a pooled 2026-era stdio child its own fresh assertion too", async () => {
    const META = { "io.modelcontextprotocol/protocolVersion": "2026-07-28" };
    const res = await rawPost(
      `${origin()}/files/mcp`,
      {
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: {
          name: "env",
          arguments: {},
          _meta: {
            ...META,
            "io.modelcontextprotocol/clientInfo": { name: "raw", version: "1" },
            "io.modelcontextprotocol/clientCapabilities": {},
          },
        },
      },
      {
        authorization: `Bearer ${keys.files!.key}`,
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "env",
      },
    );
    expect(res.status).toBe(200);
    const [m] = messagesOf(res.text) as Array<{ result?: { content: Array<{ text: string }> } }>;
    const env = JSON.parse(m!.result!.content[0]!.text) as Record<string, string>;
    expect(env.MCPGATE_SUBJECT).toBe(`key:${keys.files!.id}`);
    const info = await filesAssertion(env.MCPGATE_IDENTITY!);
    // Signed for this child when it started: valid for the sessions' idle TTL, not nearly spent.
    expect((info.expiresAt ?? 0) - Date.now() / 1000).toBeGreaterThan(60);
  });

  it("is probed per path (mcpgate probe / monitor targets)", async () => {
    const notesUp = await probeEndpoint(`${origin()}/notes/mcp`, { key: keys.reader!.key });
    expect(notesUp.status).toBe("up");
    const filesUp = await probeEndpoint(`${origin()}/files/mcp`, { key: keys.files!.key });
    expect(filesUp.status).toBe("up");
    expect(filesUp.schemaHash).not.toBe(notesUp.schemaHash); // two servers, two tool lists
    const noKey = await probeEndpoint(`${origin()}/notes/mcp`);
    expect(noKey.status).toBe("auth_rejected");
  });

  it("publishes the signing keys at /.well-known/jwks.json without a credential", async () => {
    const res = await fetch(`${origin()}/.well-known/jwks.json`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { keys: Array<Record<string, unknown>> };
    expect(body.keys.length).toBeGreaterThan(0);
    for (const k of body.keys) {
      expect(k.d).toBeUndefined();
      expect(k).toMatchObject({ use: "sig", alg: "ES256" });
    }
  });

  it("names the upstream in request logs and audit events", async () => {
    const { client } = await connectClient(`${origin()}/notes/mcp`, keys.reader!.key);
    await client.listTools();
    await client.close();
    const files = await connectClient(`${origin()}/files/mcp`, keys.reader!.key);
    const denied = (await files.client.callTool({ name: "env", arguments: {} })) as { isError?: boolean };
    expect(denied.isError).toBe(true);
    await files.client.close();
    const requests = gw.logs.filter((l) => l.includes('"msg":"request"') && l.includes('"upstream":"notes"'));
    expect(requests.length).toBeGreaterThan(0);
    const audits = gw.logs.filter((l) => l.includes('"type":"denied"') && l.includes('"upstream":"files"'));
    expect(audits.length).toBeGreaterThan(0);
    const everything = gw.logs.join("\n");
    for (const { key } of Object.values(keys)) expect(everything).not.toContain(key);
    expect(everything).not.toMatch(/eyJ[A-Za-z0-9_-]{20,}\.eyJ/); // no assertion in a log line
  });
});

describe("each upstream is its own protected resource (RFC 9728, RFC 8707)", () => {
  let as: AuthServer;
  let up: RecordingUpstream;
  let gw2: TestGateway;
  let base: string;
  beforeAll(async () => {
    as = await startAuthServer();
    up = await startRecordingUpstream();
    const port = await findFreePort("127.0.0.1");
    base = `http://127.0.0.1:${port}`;
    gw2 = await startTestGateway(
      {
        listen: { host: "127.0.0.1", port },
        publicUrl: base,
        auth: { jwt: { issuer: as.issuer } },
        rateLimit: { perPrincipal: { limit: 3, window: "1m" } },
        upstreams: [
          { name: "notes", path: "/notes/mcp", url: up.url },
          { name: "files", path: "/files/mcp", url: up.url },
        ],
      },
      { MCP_API_KEY: RL_KEY },
    );
  }, 60_000);
  afterAll(async () => {
    await gw2?.close();
    await up?.close();
    await as?.stop();
  });

  it("serves a path-suffixed PRM per upstream naming its resource", async () => {
    for (const path of ["/notes/mcp", "/files/mcp"]) {
      const res = await fetch(`${base}/.well-known/oauth-protected-resource${path}`);
      expect(res.status).toBe(200);
      const doc = (await res.json()) as { resource: string; authorization_servers: string[] };
      expect(doc.resource).toBe(`${base}${path}`);
      expect(doc.authorization_servers).toEqual([as.issuer]);
    }
    const challenge = await rawPost(`${base}/files/mcp`, INIT);
    expect(challenge.status).toBe(401);
    expect(challenge.headers.get("www-authenticate")).toContain(
      `resource_metadata="${base}/.well-known/oauth-protected-resource/files/mcp"`,
    );
  });

  it("accepts a token issued for one upstream there only (audience = its resource URI)", async () => {
    const forNotes = await as.token(`${base}/notes/mcp`);
    expect((await rawPost(`${base}/notes/mcp`, INIT, { authorization: `Bearer ${forNotes}` })).status).toBe(
      200,
    );
    const elsewhere = await rawPost(`${base}/files/mcp`, INIT, { authorization: `Bearer ${forNotes}` });
    expect(elsewhere.status).toBe(401);
    expect(elsewhere.headers.get("www-authenticate")).toContain('error="invalid_token"');
  });

  it("keeps each upstream's rate-limit budget apart", async () => {
    const auth = { authorization: `Bearer ${RL_KEY}` };
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await rawPost(`${base}/notes/mcp`, INIT, auth)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect((await rawPost(`${base}/files/mcp`, INIT, auth)).status).toBe(200);
  });
});
