import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort } from "../../src/gateway/free-port.js";
import { connectClient, INIT } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";
import { portOpen } from "./spawn-gateway.js";

const KEY = `redis-fault-${randomBytes(16).toString("hex")}`;

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Our own redis-server (never the shared 6379): no persistence, so a restart starts empty. */
class OwnRedis {
  child: ChildProcess | undefined;
  constructor(readonly port: number) {}
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start() {
    this.child = spawn(
      "redis-server",
      ["--port", String(this.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
      { stdio: "ignore" },
    );
    await until("redis to listen", () => portOpen(this.port));
  }
  /** SIGKILL: the process dies without a goodbye, as in a crash. */
  async kill() {
    const c = this.child;
    this.child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGKILL");
    await exited;
    await until("redis to stop", async () => !(await portOpen(this.port)));
  }
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const started = performance.now();
  const res = await request(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${KEY}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, text, ms: performance.now() - started, headers: res.headers };
}

describe("Redis state store killed and restarted", () => {
  let redis: OwnRedis;
  let upstream: RecordingUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    redis = new OwnRedis(await findFreePort("127.0.0.1"));
    await redis.start();
    upstream = await startRecordingUpstream();
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url },
        state: { redis: redis.url, prefix: `mcpgate-fault-${randomBytes(4).toString("hex")}:` },
      },
      { MCP_API_KEY: KEY },
      "warn",
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await redis?.kill();
  });

  it("answers 503 while Redis is down, never forwards, and recovers when it is back", async () => {
    // A session bound in Redis works.
    const { client, transport } = await connectClient(gw.url, KEY);
    const sessionId = transport.sessionId!;
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    const ping = { jsonrpc: "2.0", id: 9, method: "ping" };
    const onSession = { "mcp-session-id": sessionId, "mcp-protocol-version": "2025-06-18" };
    expect((await post(gw.url, ping, onSession)).status).toBe(200);

    await redis.kill();
    const forwardedBefore = upstream.seen.length;
    for (let i = 0; i < 3; i++) {
      const r = await post(gw.url, ping, onSession);
      expect(r.status).toBe(503);
      expect(r.ms).toBeLessThan(3000); // fails fast: no request hangs on a dead store
      expect(r.text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|redis/i);
    }
    // The session could not be checked, so nothing on it went upstream.
    expect(
      upstream.seen.slice(forwardedBefore).filter((s) => s.headers["mcp-session-id"] === sessionId),
    ).toEqual([]);
    // A new session minted while Redis is down cannot be bound: it must not be usable later.
    const orphanInit = await post(gw.url, INIT);
    const orphan = orphanInit.headers["mcp-session-id"];
    // Its binding fails, so the gateway answers 503 and never hands out the unbound session id.
    expect(orphanInit.status).toBe(503);
    expect(orphan).toBeUndefined();
    // The gateway itself is alive and still refuses bad credentials with 401, not 5xx.
    const health = await request(new URL("/healthz", gw.url));
    expect(health.statusCode).toBe(200);
    await health.body.text();
    expect((await post(gw.url, INIT, { authorization: "Bearer wrong-key-wrong-key" })).status).toBe(401);

    await redis.start();
    // Without persistence the restarted Redis is empty: the old session is unknown (404), and a
    // new client gets a new session that works end to end.
    await until("the gateway to reconnect to redis", async () => {
      const r = await post(gw.url, ping, onSession);
      return r.status !== 503;
    });
    expect((await post(gw.url, ping, onSession)).status).toBe(404);
    if (typeof orphan === "string") {
      const r = await post(gw.url, ping, { ...onSession, "mcp-session-id": orphan });
      expect(r.status).toBe(404);
    }
    const fresh = await connectClient(gw.url, KEY);
    expect((await fresh.client.listTools()).tools.length).toBeGreaterThan(0);
    const res = await fresh.client.callTool({ name: "add", arguments: { a: 1, b: 2 } });
    expect(res.content).toEqual([{ type: "text", text: "3" }]);
    await fresh.client.close();
    await client.close().catch(() => {});
    expect(gw.logs.some((l) => l.includes(KEY))).toBe(false);
  });
});
