import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/authn/api-key.js";
import { issueApiKey, rotateApiKey } from "../../src/authn/key-lifecycle.js";
import type { KeyStore } from "../../src/stores/key-store.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { connectClient, INIT, messagesOf, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

const STATIC_KEY = "e2e-static-key-0123456789abcdef-never-log";
const HOUR = 3_600_000;

describe("stored API keys through the gateway (SQLite store, SDK 1.x client)", () => {
  let dir: string;
  let store: KeyStore;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  const keys: Record<string, string> = {};
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-e2e-keys-"));
    const location = `sqlite:${join(dir, "keys.db")}`;
    store = await openKeyStore(location);
    const add = async (name: string, opts: Parameters<typeof issueApiKey>[1]) => {
      const { key, record } = await issueApiKey(store, opts);
      keys[name] = key;
      ids[name] = record.id;
    };
    await add("good", { name: "good", scopes: ["tools:call"], tenant: "acme" });
    await add("revoked", { name: "revoked" });
    await store.revoke(ids.revoked!);
    await add("expired", { name: "expired", expiresInMs: 1000, now: Date.now() - 2000 });
    await add("graced", { name: "graced" });
    await add("noGrace", { name: "no grace" });
    await add("probe", { name: "uptime", probe: true });
    await add("limited", { name: "limited", rateLimit: { perMinute: 3 } });
    await add("later", { name: "revoked while in use" });
    const graced = await rotateApiKey(store, ids.graced!, { graceMs: HOUR });
    const noGrace = await rotateApiKey(store, ids.noGrace!, { graceMs: 0 });
    if (!graced.ok || !noGrace.ok) throw new Error("rotation failed");
    keys.gracedNew = graced.key;
    keys.noGraceNew = noGrace.key;

    upstream = await startRecordingUpstream();
    gw = await startTestGateway(
      { upstream: { url: upstream.url }, auth: { apiKeys: { store: location } } },
      { MCP_API_KEY: STATIC_KEY },
    );
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A 401 for `token`, with the RFC 6750 invalid_token challenge and nothing sent upstream. */
  async function expectRejected(token: string): Promise<void> {
    const before = upstream.seen.length;
    const r = await rawPost(gw.url, INIT, { authorization: `Bearer ${token}` });
    expect(r.status).toBe(401);
    const challenge = r.headers.get("www-authenticate") ?? "";
    expect(challenge).toMatch(/^Bearer realm="mcp"/);
    expect(challenge).toContain('error="invalid_token"');
    // API keys only: no OAuth discovery pointer (DESIGN.md §2).
    expect(challenge).not.toContain("resource_metadata");
    expect(upstream.seen.length).toBe(before);
  }

  describe("accepted", () => {
    it("lets a stored key list and call tools with the official SDK client, never forwarding the key", async () => {
      const { client } = await connectClient(gw.url, keys.good);
      const tools = await client.listTools();
      expect(tools.tools.map((t) => t.name)).toContain("add");
      const result = await client.callTool({ name: "add", arguments: { a: 2, b: 40 } });
      expect(result.content).toEqual([{ type: "text", text: "42" }]);
      await client.close();
      expect(JSON.stringify(upstream.seen)).not.toContain(keys.good!.split("_")[2]);
      for (const line of gw.logs) expect(line).not.toContain(keys.good!.split("_")[2]);
      expect(gw.logs.some((l) => l.includes(`mcpg_${ids.good}`))).toBe(true);
    });

    it("accepts the static key and stored keys side by side", async () => {
      for (const token of [STATIC_KEY, keys.good!]) {
        const { client } = await connectClient(gw.url, token);
        expect((await client.listTools()).tools.length).toBeGreaterThan(0);
        await client.close();
      }
    });
  });

  describe("refused with 401", () => {
    it("refuses a revoked key", async () => {
      await expectRejected(keys.revoked!);
    });

    it("refuses an expired key", async () => {
      await expectRejected(keys.expired!);
    });

    it("refuses a wrong secret under a valid id (well-formed, checksum valid)", async () => {
      await expectRejected(generateApiKey(ids.good!).key);
    });

    it("refuses a key with a bad checksum", async () => {
      const k = keys.good!;
      await expectRejected(k.slice(0, -1) + (k.endsWith("A") ? "B" : "A"));
    });

    it("refuses an unknown id", async () => {
      await expectRejected(generateApiKey().key);
    });

    it("makes the SDK client fail to connect with a refused key", async () => {
      await expect(connectClient(gw.url, keys.revoked)).rejects.toThrow();
    });
  });

  describe("rotation", () => {
    it("accepts the old key during its grace period and the new key alongside it", async () => {
      for (const token of [keys.graced!, keys.gracedNew!]) {
        const { client } = await connectClient(gw.url, token);
        expect((await client.callTool({ name: "add", arguments: { a: 1, b: 1 } })).content).toEqual([
          { type: "text", text: "2" },
        ]);
        await client.close();
      }
    });

    it("refuses the old key at once when rotated without grace, and accepts its successor", async () => {
      await expectRejected(keys.noGrace!);
      const { client } = await connectClient(gw.url, keys.noGraceNew);
      expect((await client.listTools()).tools.length).toBeGreaterThan(0);
      await client.close();
    });
  });

  describe("revocation while in use", () => {
    it("refuses the next request on an open session within 1 s of a revocation in the store", async () => {
      const { client } = await connectClient(gw.url, keys.later);
      expect((await client.listTools()).tools.length).toBeGreaterThan(0);
      const r = await store.revoke(ids.later!);
      expect(r.ok).toBe(true);
      await new Promise((done) => setTimeout(done, 1100));
      await expect(client.listTools()).rejects.toThrow();
      await client.close().catch(() => {});
      await expectRejected(keys.later!);
    });
  });

  describe("probe keys", () => {
    it("may initialize and list, and a tools/call is refused without reaching the upstream", async () => {
      const { client, transport } = await connectClient(gw.url, keys.probe);
      const tools = await client.listTools();
      expect(tools.tools.length).toBeGreaterThan(0);
      await client.ping();
      const callsBefore = upstream.rpcCalls().filter((c) => c.startsWith("tools/call")).length;
      await expect(client.callTool({ name: "add", arguments: { a: 1, b: 2 } })).rejects.toThrow(/probe/);
      // Also refused in a raw request on the same session.
      const raw = await rawPost(
        gw.url,
        { jsonrpc: "2.0", id: 7, method: "resources/read", params: { uri: "x://y" } },
        {
          authorization: `Bearer ${keys.probe}`,
          "mcp-session-id": transport.sessionId!,
          "mcp-protocol-version": "2025-06-18",
        },
      );
      expect(raw.status).toBe(200);
      const [msg] = messagesOf(raw.text);
      expect(msg).toMatchObject({ id: 7, error: { message: expect.stringMatching(/probe/) } });
      expect(upstream.rpcCalls().filter((c) => c.startsWith("tools/call")).length).toBe(callsBefore);
      expect(upstream.rpcCalls()).not.toContain("resources/read");
      await client.close();
    });
  });

  describe("per-key limits and last use", () => {
    it("applies a key's own per-minute rate limit (429 with Retry-After)", async () => {
      const statuses: number[] = [];
      let retryAfter: string | null = null;
      for (let i = 0; i < 5; i++) {
        const r = await rawPost(gw.url, { ...INIT, id: i }, { authorization: `Bearer ${keys.limited}` });
        statuses.push(r.status);
        if (r.status === 429) retryAfter = r.headers.get("retry-after");
      }
      expect(statuses.slice(0, 3).every((s) => s === 200)).toBe(true);
      expect(statuses.slice(3)).toEqual([429, 429]);
      expect(Number(retryAfter)).toBeGreaterThan(0);
    });

    it("records last use in the store (batched, written at the latest on shutdown)", async () => {
      await gw.close();
      const record = await store.get(ids.good!);
      expect(record?.lastUsedAt).toBeGreaterThan(Date.now() - 60_000);
      expect((await store.get(ids.revoked!))?.lastUsedAt).toBeUndefined();
      gw = await startTestGateway(
        { upstream: { url: upstream.url }, auth: { apiKeys: { store: `sqlite:${join(dir, "keys.db")}` } } },
        { MCP_API_KEY: STATIC_KEY },
      );
    });
  });
});

describe("stored API keys through the gateway (PostgreSQL store)", () => {
  const PG_URL = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const schema = `mcpgate_e2e_keys_${randomBytes(4).toString("hex")}`;
  const location = `${PG_URL}?schema=${schema}`;
  let store: KeyStore;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  let good: string;
  let revoked: string;

  beforeAll(async () => {
    store = await openKeyStore(location);
    good = (await issueApiKey(store, { name: "pg-good", scopes: ["tools:call"] })).key;
    const r = await issueApiKey(store, { name: "pg-revoked" });
    revoked = r.key;
    await store.revoke(r.record.id);
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({ upstream: { url: upstream.url }, auth: { apiKeys: { store: location } } });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await store?.close();
    const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });

  it("accepts a stored key with the SDK client and refuses a revoked one with 401", async () => {
    const { client } = await connectClient(gw.url, good);
    expect((await client.callTool({ name: "add", arguments: { a: 20, b: 22 } })).content).toEqual([
      { type: "text", text: "42" },
    ]);
    await client.close();
    const r = await rawPost(gw.url, INIT, { authorization: `Bearer ${revoked}` });
    expect(r.status).toBe(401);
    expect(r.headers.get("www-authenticate")).toContain('error="invalid_token"');
  });
});
