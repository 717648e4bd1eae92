import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { findFreePort } from "../../src/gateway/free-port.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { rawPost } from "../helpers/client.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";
import { type OwnRedis, startOwnRedis } from "../stores/redis-server-fixture.js";

const PG_URL = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const ROOT = new URL("../../", import.meta.url).pathname;
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface GatewayProcess {
  url: string;
  child: ChildProcess;
  output: string[];
}

async function spawnGateway(configPath: string, port: number): Promise<GatewayProcess> {
  const output: string[] = [];
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "src/cli/main.ts", "serve", "--config", configPath],
    {
      cwd: ROOT,
      env: { ...process.env, MCP_API_KEY: "" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout!.on("data", (d) => output.push(String(d)));
  child.stderr!.on("data", (d) => output.push(String(d)));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gateway exited: ${output.join("")}`);
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`gateway did not start: ${output.join("")}`);
    await sleep(100);
  }
  return { url: `${base}/mcp`, child, output };
}

async function stopProcess(p: GatewayProcess | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGTERM");
  await Promise.race([exited, sleep(5000).then(() => p.child.kill("SIGKILL"))]);
}

/** An SDK 1.x client on `url`; with `sessionId`, it joins an existing session (no initialize). */
async function sdkClient(url: string, key: string, sessionId?: string) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
    ...(sessionId ? { sessionId } : {}),
  });
  const client = new Client({ name: "multi-instance-test", version: "1.0.0" });
  await client.connect(transport);
  return { client, transport };
}

const call = (url: string, key: string, sessionId: string, text = "hi") =>
  rawPost(
    url,
    { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", arguments: { message: text } } },
    { authorization: `Bearer ${key}`, "mcp-session-id": sessionId, "mcp-protocol-version": "2025-06-18" },
  );

describe("two gateway processes sharing Redis (state) and PostgreSQL (keys) in front of one upstream", () => {
  const schema = `mcpgate_multi_${randomBytes(5).toString("hex")}`;
  const prefix = `mcpgate-multi-${randomBytes(4).toString("hex")}:`;
  const storeLocation = `${PG_URL}?schema=${schema}`;
  let dir: string;
  let configPath: string;
  let redis: OwnRedis;
  let upstream: RecordingUpstream;
  let a: GatewayProcess;
  let b: GatewayProcess;
  let keyA: string;
  let keyB: string;
  let keyC: string;
  let keyCId: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-multi-"));
    redis = await startOwnRedis();
    upstream = await startRecordingUpstream();
    const store = await openKeyStore(storeLocation);
    keyA = (await issueApiKey(store, { name: "alice" })).key;
    keyB = (await issueApiKey(store, { name: "bob" })).key;
    const c = await issueApiKey(store, { name: "carol" });
    keyC = c.key;
    keyCId = c.record.id;
    await store.close();
    const [portA, portB] = [await findFreePort("127.0.0.1"), await findFreePort("127.0.0.1")];
    const config = (port: number) => ({
      listen: { host: "127.0.0.1", port },
      upstream: { url: upstream.url },
      auth: { apiKeys: { store: storeLocation } },
      state: { redis: redis.url, prefix },
      rateLimit: { perPrincipal: { limit: 10_000, window: "1m" } },
      logging: { level: "warn" },
    });
    configPath = join(dir, "a.json");
    writeFileSync(configPath, JSON.stringify(config(portA)));
    writeFileSync(join(dir, "b.json"), JSON.stringify(config(portB)));
    [a, b] = await Promise.all([spawnGateway(configPath, portA), spawnGateway(join(dir, "b.json"), portB)]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([stopProcess(a), stopProcess(b)]);
    await upstream?.close();
    await redis?.stop();
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves one session through either instance: initialize via A, tools/call via B, DELETE via A", async () => {
    const viaA = await sdkClient(a.url, keyA);
    const sid = viaA.transport.sessionId!;
    expect(sid).toBeTruthy();
    const viaB = await sdkClient(b.url, keyA, sid);
    const r = await viaB.client.callTool({ name: "echo", arguments: { message: "through B" } });
    expect(JSON.stringify(r.content)).toContain("through B");

    // Another principal with the same session id is refused by B too, and nothing is forwarded.
    const before = upstream.seen.length;
    expect((await call(b.url, keyB, sid)).status).toBe(404);
    expect(upstream.seen.length).toBe(before);

    await viaA.transport.terminateSession();
    const mark = upstream.seen.length;
    expect((await call(b.url, keyA, sid)).status).toBe(404);
    expect((await call(a.url, keyA, sid)).status).toBe(404);
    expect(upstream.seen.length).toBe(mark);
    await viaA.client.close();
    await viaB.client.close().catch(() => {});
  });

  it("costs one Redis round trip per request for the session check and the rate limit together", async () => {
    const { client, transport } = await sdkClient(a.url, keyA);
    const sid = transport.sessionId!;
    expect((await call(b.url, keyA, sid)).status).toBe(200); // warm: the script is loaded on B
    const admin = new Redis(redis.url);
    const monitor = await admin.monitor();
    const seen: string[][] = [];
    monitor.on("monitor", (_time: string, args: string[], source: string) => {
      if (source !== "lua") seen.push(args);
    });
    await sleep(100);
    seen.length = 0;
    expect((await call(b.url, keyA, sid, "counted")).status).toBe(200);
    await sleep(200);
    monitor.disconnect();
    admin.disconnect();
    // Commands on session or rate-limit keys (the credential guard keeps its own `guard:` keys).
    const state = seen.filter((args) =>
      args.some((a) => a.startsWith(`${prefix}s:`) || a.startsWith(`${prefix}rl:`)),
    );
    expect(state.map((c) => c[0]!.toLowerCase())).toEqual(["evalsha"]);
    // The script really did both: it names the session key and the principal's bucket.
    expect(state[0]!.some((a) => a === `${prefix}s:${sid}`)).toBe(true);
    expect(state[0]!.some((a) => a.startsWith(`${prefix}rl:p:`))).toBe(true);
    // Nothing else of ours touched Redis apart from the guard's lockout lookup.
    const others = seen.filter((args) => !state.includes(args));
    expect(others.every((args) => args.some((a) => a.startsWith(`${prefix}guard:`)))).toBe(true);
    await client.close();
  });

  it("refuses a key revoked with the CLI on both instances within 1 s", async () => {
    const { client, transport } = await sdkClient(a.url, keyC);
    const sid = transport.sessionId!;
    expect((await call(a.url, keyC, sid)).status).toBe(200);
    expect((await call(b.url, keyC, sid)).status).toBe(200);
    await run(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "keys", "revoke", keyCId, "--config", configPath],
      {
        cwd: ROOT,
      },
    );
    const revokedAt = Date.now();
    const refusedAfter: number[] = [];
    for (const gw of [a, b]) {
      for (;;) {
        const r = await call(gw.url, keyC, sid);
        if (r.status === 401) {
          refusedAfter.push(Date.now() - revokedAt);
          break;
        }
        if (Date.now() - revokedAt > 3000) throw new Error(`still ${r.status} 3 s after revocation`);
        await sleep(20);
      }
    }
    expect(Math.max(...refusedAfter)).toBeLessThan(1000);
    await client.close().catch(() => {});
  });

  it("answers 503 while Redis is down and recovers by itself when it returns", async () => {
    const { client, transport } = await sdkClient(a.url, keyA);
    const sid = transport.sessionId!;
    await client.close();
    await redis.stop();
    const before = upstream.seen.length;
    for (const gw of [a, b]) {
      const started = Date.now();
      expect((await call(gw.url, keyA, sid)).status).toBe(503);
      expect(Date.now() - started).toBeLessThan(2000);
    }
    expect(upstream.seen.length).toBe(before);
    await redis.start();
    // Our redis-server keeps nothing across restarts, so old bindings are gone (404); new sessions work.
    const deadline = Date.now() + 8000;
    let last = 0;
    while (Date.now() < deadline) {
      last = (await call(a.url, keyA, sid)).status;
      if (last !== 503) break;
      await sleep(100);
    }
    expect(last).toBe(404);
    const fresh = await sdkClient(a.url, keyA);
    const viaB = await sdkClient(b.url, keyA, fresh.transport.sessionId!);
    const r = await viaB.client.callTool({ name: "echo", arguments: { message: "after outage" } });
    expect(JSON.stringify(r.content)).toContain("after outage");
    await fresh.client.close();
    await viaB.client.close().catch(() => {});
  });
});
