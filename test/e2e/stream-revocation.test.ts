import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { createApiKeyVerifier } from "../../src/authn/stored-key.js";
import { createDemoMcpServer } from "../../src/cli/demo-server.js";
import { type AuthenticatedRequest, createNodeMcpAuth } from "../../src/http/node.js";
import { createMemoryKeyStore } from "../../src/stores/memory-keys.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { createRedisKeyEvents } from "../../src/stores/redis-key-events.js";
import { type JwksServer, makeKey, mint, startJwksServer, type TestKey } from "../authn/jwks-fixture.js";
import { INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * Issue 14 item 5: a check made at the start of a stream is made again while it lasts. An open GET
 * stream, and a long POST SSE answer, end within 1 s of `keys revoke` (memory state: the verifier
 * polls; Redis state: the revocation feed reaches the other instance at once), and at `exp` for
 * a JWT.
 */
const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** Open a session and its GET stream; resolves with the ms at which the stream ended. */
async function openGetStream(url: string, token: string): Promise<{ ended: Promise<number>; abort(): void }> {
  const init = await rawPost(url, INIT, { authorization: `Bearer ${token}` });
  expect(init.status).toBe(200);
  const sid = init.headers.get("mcp-session-id")!;
  const h = { authorization: `Bearer ${token}`, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" };
  await rawPost(url, { jsonrpc: "2.0", method: "notifications/initialized" }, h);
  const ac = new AbortController();
  const res = await fetch(url, { headers: { ...h, accept: "text/event-stream" }, signal: ac.signal });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const ended = (async () => {
    try {
      for (;;) {
        const { done } = await reader.read();
        if (done) break;
      }
    } catch {
      // A reset counts as the end too.
    }
    return performance.now();
  })();
  return { ended, abort: () => ac.abort() };
}

/** Whether `p` settles within `ms`. */
const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describe("open streams end when the credential stops being valid", () => {
  let dir: string;
  let location: string;
  let upstream: RecordingUpstream;
  const prefix = `mcpgate-test-streams-${randomBytes(5).toString("hex")}:`;
  const gateways: TestGateway[] = [];
  let single: TestGateway;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-streams-"));
    location = `sqlite:${join(dir, "keys.db")}`;
    // The demo tools plus `slow`: a progress notification every 100 ms for 5 s (a long POST SSE).
    upstream = await startRecordingUpstream({
      makeServer: () => {
        const s = createDemoMcpServer();
        s.registerTool("slow", { inputSchema: { n: z.number() } }, async ({ n }, extra) => {
          for (let i = 1; i <= n; i++) {
            await extra.sendNotification({
              method: "notifications/progress",
              params: { progressToken: extra._meta?.progressToken ?? 0, progress: i, total: n },
            });
            await new Promise((r) => setTimeout(r, 100));
          }
          return { content: [{ type: "text", text: "slow done" }] };
        });
        return s;
      },
    });
    single = await startTestGateway({
      upstream: { url: upstream.url },
      auth: { apiKeys: { store: location } },
    });
    gateways.push(single);
  });
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
    const raw = new Redis(REDIS_URL);
    const left = await raw.keys(`${prefix}*`);
    if (left.length) await raw.del(...left);
    await raw.quit();
  });

  async function issue(name: string) {
    const store = await openKeyStore(location);
    try {
      const k = await issueApiKey(store, { name, scopes: [] });
      return { key: k.key, id: k.record.id };
    } finally {
      await store.close();
    }
  }
  async function revoke(id: string, publish: boolean) {
    const store = await openKeyStore(location);
    try {
      expect((await store.revoke(id)).ok).toBe(true);
    } finally {
      await store.close();
    }
    // What `mcpgate keys revoke` does when state.redis is configured.
    if (publish) {
      const events = createRedisKeyEvents({ url: REDIS_URL, prefix });
      await events.publishRevoked(id);
      await events.close();
    }
  }

  it("ends a GET stream within about 1 s of a revocation (one instance, memory state)", async () => {
    const gw = single;
    const k = await issue("get-stream");
    const stream = await openGetStream(gw.url, k.key);
    expect(await within(stream.ended, 300)).toBe(false);
    const t0 = performance.now();
    await revoke(k.id, false);
    expect(await within(stream.ended, 2_000)).toBe(true);
    expect((await stream.ended) - t0).toBeLessThan(1_500);
    // The trail says so: who, which session, why (and never the key).
    const ended = () =>
      gw.logs
        .map((l) => JSON.parse(l) as { audit?: Record<string, unknown> })
        .filter((l) => l.audit?.type === "stream_ended")
        .map((l) => l.audit!);
    await expect.poll(() => ended().length).toBe(1);
    expect(ended()[0]).toMatchObject({ reason: "credential_ended", actor: expect.stringMatching(/^mcpg_/) });
    expect(ended()[0]!.sessionId).toMatch(/^[0-9a-f-]{8}…$/);
    expect(gw.logs.join("\n")).not.toContain(k.key);
  });

  it("ends a long POST SSE answer too", async () => {
    const gw = single;
    const k = await issue("post-stream");
    const init = await rawPost(gw.url, INIT, { authorization: `Bearer ${k.key}` });
    const sid = init.headers.get("mcp-session-id")!;
    const h = {
      authorization: `Bearer ${k.key}`,
      "mcp-session-id": sid,
      "mcp-protocol-version": "2025-06-18",
    };
    await rawPost(gw.url, { jsonrpc: "2.0", method: "notifications/initialized" }, h);
    // 5 s of progress events on the POST's own SSE answer.
    const res = await fetch(gw.url, {
      method: "POST",
      headers: { ...h, "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 9,
        method: "tools/call",
        params: { name: "slow", arguments: { n: 50 }, _meta: { progressToken: "p" } },
      }),
    });
    expect(res.headers.get("content-type")).toMatch(/event-stream/);
    const reader = res.body!.getReader();
    let text = "";
    const ended = (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          text += Buffer.from(value).toString();
        }
      } catch {}
      return performance.now();
    })();
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    await revoke(k.id, false);
    await ended;
    expect((await ended) - t0).toBeLessThan(1_500);
    // The tool had not finished: its result never reached the revoked caller.
    expect(text).toContain("notifications/progress");
    expect(text).not.toContain("slow done");
    expect(single.logs.join("\n")).not.toContain(k.key);
  });

  it("ends a long request answered in one JSON body (no stream) too: the result never reaches the revoked caller", async () => {
    // An upstream that answers POSTs with JSON (enableJsonResponse) and a tool that takes 3 s.
    const jsonUpstream = await startRecordingUpstream({
      jsonResponse: true,
      makeServer: () => {
        const s = createDemoMcpServer();
        s.registerTool("slow", { inputSchema: { ms: z.number() } }, async ({ ms }) => {
          await new Promise((r) => setTimeout(r, ms));
          return { content: [{ type: "text", text: "slow done" }] };
        });
        return s;
      },
    });
    const gw = await startTestGateway({
      upstream: { url: jsonUpstream.url },
      auth: { apiKeys: { store: location } },
    });
    gateways.push(gw);
    try {
      const k = await issue("json-post");
      const init = await rawPost(gw.url, INIT, { authorization: `Bearer ${k.key}` });
      const h = {
        authorization: `Bearer ${k.key}`,
        "mcp-session-id": init.headers.get("mcp-session-id")!,
        "mcp-protocol-version": "2025-06-18",
      };
      await rawPost(gw.url, { jsonrpc: "2.0", method: "notifications/initialized" }, h);
      const call = rawPost(
        gw.url,
        { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "slow", arguments: { ms: 3_000 } } },
        h,
      );
      await new Promise((r) => setTimeout(r, 200));
      const t0 = performance.now();
      await revoke(k.id, false);
      const res = await call;
      const ms = performance.now() - t0;
      // Within the lazy check (500 ms after forwarding) plus the verifier's ~1 s poll, long before 3 s.
      expect(ms).toBeLessThan(2_200);
      expect(res.status).toBe(401);
      // A 401 like any other (DESIGN.md §2): the challenge says the token is no longer valid.
      expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
      expect(res.text).not.toContain("slow done");
      // A quick call by a valid key is unaffected (its answer comes before any check is armed).
      const other = await issue("json-quick");
      const init2 = await rawPost(gw.url, INIT, { authorization: `Bearer ${other.key}` });
      expect(init2.status).toBe(200);
    } finally {
      await jsonUpstream.close();
    }
  });

  it("ends a GET stream when its stored key expires", async () => {
    const store = await openKeyStore(location);
    const issued = await issueApiKey(store, { name: "expiring", scopes: [], expiresInMs: 3_000 });
    await store.close();
    const expiresAt = issued.record.expiresAt!;
    const stream = await openGetStream(single.url, issued.key);
    const endedAt = await Promise.race([
      stream.ended,
      new Promise<number>((r) => setTimeout(() => r(-1), 6_000)),
    ]);
    expect(endedAt).toBeGreaterThan(0);
    const endedEpochMs = Date.now() - (performance.now() - endedAt);
    // Identity expiry is whole seconds (floor), so the stream may end up to a second early, never late.
    expect(endedEpochMs).toBeGreaterThanOrEqual(expiresAt - 1_500);
    expect(endedEpochMs).toBeLessThan(expiresAt + 1_000);
  });

  it("ends a GET stream on another instance at once through the Redis revocation feed", async () => {
    const config = {
      upstream: { url: upstream.url },
      auth: { apiKeys: { store: location } },
      state: { redis: REDIS_URL, prefix },
    };
    const a = await startTestGateway(config);
    const b = await startTestGateway(config);
    gateways.push(a, b);
    const k = await issue("two-instances");
    const stream = await openGetStream(b.url, k.key);
    expect(await within(stream.ended, 300)).toBe(false);
    const t0 = performance.now();
    await revoke(k.id, true);
    expect(await within(stream.ended, 2_000)).toBe(true);
    expect((await stream.ended) - t0).toBeLessThan(1_000);
  });
});

describe("a JWT's GET stream ends at exp", () => {
  let key: TestKey;
  let jwks: JwksServer;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  const issuer = "https://as.streams.example";

  beforeAll(async () => {
    key = await makeKey("ES256", "s1");
    jwks = await startJwksServer([key.jwk]);
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({
      upstream: { url: upstream.url },
      auth: { jwt: { issuer, jwksUri: jwks.url, algorithms: ["ES256"] } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await jwks?.stop();
  });

  it("closes the stream when the token expires", async () => {
    const exp = Math.floor(Date.now() / 1000) + 3;
    const token = await mint(key, { iss: issuer, sub: "alice", aud: gw.publicUrl, exp, iat: exp - 60 });
    const stream = await openGetStream(gw.url, token);
    const endedAt = await Promise.race([
      stream.ended,
      new Promise<number>((r) => setTimeout(() => r(-1), 6_000)),
    ]);
    expect(endedAt).toBeGreaterThan(0);
    const endedEpochMs = Date.now() - (performance.now() - endedAt);
    expect(endedEpochMs).toBeGreaterThanOrEqual(exp * 1000 - 1_000);
    expect(endedEpochMs).toBeLessThan(exp * 1000 + 1_000);
  });
});

describe("library mode (mcpgate/node): a revoked key's open GET stream ends too", () => {
  let server: import("node:http").Server;
  let url: string;
  const store = createMemoryKeyStore();

  beforeAll(async () => {
    await store.init();
    const transports = new Map<string, StreamableHTTPServerTransport>();
    let auth: ReturnType<typeof createNodeMcpAuth>;
    server = createServer(async (req, res) => {
      if (!(await auth(req, res))) return;
      const sid = req.headers["mcp-session-id"];
      let t = typeof sid === "string" ? transports.get(sid) : undefined;
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
    // No watchers option: createGate watches with every verifier that can (stored keys).
    auth = createNodeMcpAuth({ verifiers: [createApiKeyVerifier({ store })], publicUrl: url });
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("ends the stream within about a second of the revocation", async () => {
    const issued = await issueApiKey(store, { name: "lib", scopes: [] });
    const stream = await openGetStream(url, issued.key);
    expect(await within(stream.ended, 300)).toBe(false);
    const t0 = performance.now();
    await store.revoke(issued.record.id);
    expect(await within(stream.ended, 2_000)).toBe(true);
    expect((await stream.ended) - t0).toBeLessThan(1_500);
  });
});
