import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { CredentialVerifier } from "../../src/authn/verifier.js";
import { createGate, type Gate } from "../../src/gate/gate.js";
import { createHttpUpstream } from "../../src/gateway/http-upstream.js";
import { createGatewayServer, type GatewayServer, type Mount } from "../../src/gateway/server.js";
import { createStdioUpstream } from "../../src/gateway/stdio/stdio-upstream.js";
import { createLogger } from "../../src/observe/logger.js";
import { createMemoryStateStore } from "../../src/stores/memory-state.js";
import { INIT, messagesOf } from "../helpers/client.js";
import { captureStream } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";
import { TINY_SERVER } from "./stdio-helpers.js";

/**
 * The gateway server's seams (issue 13, for issues 14–17): several mounts with their own sessions,
 * extra routes before the 404, the upstream identity hook (headers, stdio env, failure → 502), the
 * aroundForward wrapper (tracing), and stream lifetime (credential expiry, watchers).
 */
const KEY = "mounts-test-key-0123456789abcdef";
let expiresInSec: number | undefined;
const verifier: CredentialVerifier = {
  kind: "api_key",
  accepts: () => true,
  async verify(token) {
    if (token !== KEY) return { ok: false, reason: "invalid" };
    return {
      ok: true,
      identity: {
        principal: "key:mounts",
        kind: "api_key",
        subject: "mounts",
        scopes: [],
        ...(expiresInSec !== undefined ? { expiresAt: Math.floor(Date.now() / 1000) + expiresInSec } : {}),
      },
    };
  },
};
const logs: string[] = [];
const logger = createLogger({ level: "warn", destination: captureStream(logs) });
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  expiresInSec = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function upstreamOf(): Promise<RecordingUpstream> {
  const up = await startRecordingUpstream();
  cleanups.push(() => up.close());
  return up;
}

async function serve(mounts: Mount[], routes: Parameters<typeof createGatewayServer>[0]["routes"] = []) {
  const gw: GatewayServer = createGatewayServer({ mounts, routes, logger, shutdownGraceMs: 200 });
  const { port } = (await gw.listen(0, "127.0.0.1")) as AddressInfo;
  cleanups.push(() => gw.close());
  return `http://127.0.0.1:${port}`;
}

const headers = {
  authorization: `Bearer ${KEY}`,
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
};
async function initialize(url: string): Promise<{ status: number; sid: string | null }> {
  const r = await fetch(url, { method: "POST", headers, body: JSON.stringify(INIT) });
  await r.text();
  return { status: r.status, sid: r.headers.get("mcp-session-id") };
}
function gateFor(path: string, extra: Partial<Parameters<typeof createGate>[0]> = {}): Gate {
  return createGate({ verifiers: [verifier], publicUrl: `http://127.0.0.1${path}`, ...extra });
}

describe("several mounts", () => {
  it("keeps sessions per mount even on one shared state store: another mount's session is 404", async () => {
    const state = createMemoryStateStore();
    const [a, b] = [await upstreamOf(), await upstreamOf()];
    const base = await serve([
      {
        name: "a",
        path: "/a/mcp",
        gate: gateFor("/a/mcp", { state, sessionScope: "a" }),
        upstream: createHttpUpstream({ url: a.url }),
      },
      {
        name: "b",
        path: "/b/mcp",
        gate: gateFor("/b/mcp", { state, sessionScope: "b" }),
        upstream: createHttpUpstream({ url: b.url }),
      },
    ]);
    const { sid } = await initialize(`${base}/a/mcp`);
    expect(sid).toBeTruthy();
    const before = b.seen.length;
    const r = await fetch(`${base}/b/mcp`, {
      method: "POST",
      headers: { ...headers, "mcp-session-id": sid!, "mcp-protocol-version": "2025-06-18" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
    });
    expect(r.status).toBe(404);
    expect(b.seen.length).toBe(before);
    const own = await fetch(`${base}/a/mcp`, {
      method: "POST",
      headers: { ...headers, "mcp-session-id": sid!, "mcp-protocol-version": "2025-06-18" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
    });
    expect(own.status).toBe(200);
  });

  it("tries extra routes before the 404, after the MCP endpoints", async () => {
    const up = await upstreamOf();
    const base = await serve(
      [
        {
          name: "default",
          path: "/mcp",
          gate: gateFor("/mcp"),
          upstream: createHttpUpstream({ url: up.url }),
        },
      ],
      [
        (req, res) => {
          if (req.url !== "/.well-known/jwks.json") return false;
          res.writeHead(200, { "content-type": "application/json" }).end('{"keys":[]}');
          return true;
        },
        async () => false,
      ],
    );
    expect(await (await fetch(`${base}/.well-known/jwks.json`)).json()).toEqual({ keys: [] });
    expect((await fetch(`${base}/elsewhere`)).status).toBe(404);
  });
});

describe("the upstream identity hook", () => {
  it("adds its headers to the upstream request (over relayed ones), and aroundForward wraps the call", async () => {
    const up = await upstreamOf();
    const seenByWrapper: string[] = [];
    const base = await serve([
      {
        name: "default",
        path: "/mcp",
        gate: gateFor("/mcp"),
        upstream: createHttpUpstream({ url: up.url }),
        identity: async (entry) => ({
          ok: true,
          headers: { authorization: `Bearer assertion-for-${entry.admission.identity.subject}` },
        }),
        aroundForward: async (ctx, next) => {
          ctx.headers.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
          seenByWrapper.push(ctx.admission.messages[0]?.method ?? ctx.admission.method);
          return next(ctx);
        },
      },
    ]);
    expect((await initialize(`${base}/mcp`)).status).toBe(200);
    const seen = up.seen.at(-1)!;
    expect(seen.headers.authorization).toBe("Bearer assertion-for-mounts");
    expect(seen.headers.traceparent).toBe("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    expect(seenByWrapper).toEqual(["initialize"]);
  });

  it("answers 502 (-31008) and forwards nothing when it fails", async () => {
    const up = await upstreamOf();
    const base = await serve([
      {
        name: "default",
        path: "/mcp",
        gate: gateFor("/mcp"),
        upstream: createHttpUpstream({ url: up.url }),
        identity: async () => ({ ok: false, reason: "exchange_failed" }),
      },
    ]);
    const r = await fetch(`${base}/mcp`, { method: "POST", headers, body: JSON.stringify(INIT) });
    expect(r.status).toBe(502);
    expect(((await r.json()) as { error: { code: number } }).error.code).toBe(-31008);
    expect(up.seen).toHaveLength(0);
  });

  it("gives a stdio child its environment at spawn (a fresh child, never a spare)", async () => {
    const upstream = createStdioUpstream({
      command: TINY_SERVER,
      logger,
      spareChildren: 1,
      killGraceMs: 500,
    });
    const base = await serve([
      {
        name: "default",
        path: "/mcp",
        gate: gateFor("/mcp"),
        upstream,
        identity: async () => ({ ok: true, env: { MCPGATE_SUBJECT: "key:mounts" } }),
      },
    ]);
    const { sid } = await initialize(`${base}/mcp`);
    const h = { ...headers, "mcp-session-id": sid!, "mcp-protocol-version": "2025-06-18" };
    const r = await fetch(`${base}/mcp`, {
      method: "POST",
      headers: h,
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 2,
        method: "tools/call",
        params: { name: "env", arguments: {} },
      }),
    });
    const [msg] = messagesOf(await r.text());
    const env = JSON.parse((msg!.result as { content: Array<{ text: string }> }).content[0]!.text);
    expect(env.MCPGATE_SUBJECT).toBe("key:mounts");
  });
});

describe("stream lifetime", () => {
  async function openGetStream(base: string): Promise<{ status: number; endedAfterMs: Promise<number> }> {
    const { sid } = await initialize(`${base}/mcp`);
    const started = Date.now();
    const r = await fetch(`${base}/mcp`, {
      headers: {
        authorization: `Bearer ${KEY}`,
        accept: "text/event-stream",
        "mcp-session-id": sid!,
        "mcp-protocol-version": "2025-06-18",
      },
    });
    const endedAfterMs = (async () => {
      const reader = r.body!.getReader();
      try {
        while (!(await reader.read()).done) {}
      } catch {}
      return Date.now() - started;
    })();
    return { status: r.status, endedAfterMs };
  }

  it("ends an open GET stream when the caller's credential expires", async () => {
    const up = await upstreamOf();
    const base = await serve([
      { name: "default", path: "/mcp", gate: gateFor("/mcp"), upstream: createHttpUpstream({ url: up.url }) },
    ]);
    expiresInSec = 2;
    const s = await openGetStream(base);
    expect(s.status).toBe(200);
    const ms = await s.endedAfterMs;
    expect(ms).toBeGreaterThan(500);
    expect(ms).toBeLessThan(4_000);
  });

  it("ends it when a watcher (e.g. key revocation) fires, and tells the watcher when the stream is over", async () => {
    const up = await upstreamOf();
    const revoke = new AbortController();
    const untils: AbortSignal[] = [];
    const gate = gateFor("/mcp", {
      watchers: [
        (_auth, until) => {
          untils.push(until);
          return revoke.signal;
        },
      ],
    });
    const base = await serve([
      { name: "default", path: "/mcp", gate, upstream: createHttpUpstream({ url: up.url }) },
    ]);
    const s = await openGetStream(base);
    expect(s.status).toBe(200);
    setTimeout(() => revoke.abort(), 300);
    expect(await s.endedAfterMs).toBeLessThan(3_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(untils.length).toBeGreaterThan(0);
    expect(untils.every((u) => u.aborted)).toBe(true);
  });

  it("ends it at the upstream identity's expiresAt", async () => {
    const up = await upstreamOf();
    let expires: number | undefined;
    const base = await serve([
      {
        name: "default",
        path: "/mcp",
        gate: gateFor("/mcp"),
        upstream: createHttpUpstream({ url: up.url }),
        identity: async () => ({ ok: true, ...(expires ? { expiresAt: expires } : {}) }),
      },
    ]);
    const { sid } = await initialize(`${base}/mcp`);
    expires = Math.floor(Date.now() / 1000) + 2;
    const started = Date.now();
    const r = await fetch(`${base}/mcp`, {
      headers: {
        authorization: `Bearer ${KEY}`,
        accept: "text/event-stream",
        "mcp-session-id": sid!,
        "mcp-protocol-version": "2025-06-18",
      },
    });
    expect(r.status).toBe(200);
    await r.text().catch(() => "");
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it("answers a request not yet answered when the upstream identity expires with a 502, not a 401", async () => {
    // An upstream that answers in 3 s, in one JSON body.
    const slow = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        const id = body ? JSON.parse(body).id : null;
        setTimeout(
          () =>
            res
              .writeHead(200, { "content-type": "application/json" })
              .end(JSON.stringify({ jsonrpc: "2.0", id, result: {} })),
          3_000,
        );
      });
    });
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
    cleanups.push(async () => {
      slow.closeAllConnections();
      await new Promise<void>((r) => slow.close(() => r()));
    });
    const base = await serve([
      {
        name: "default",
        path: "/mcp",
        gate: gateFor("/mcp"),
        upstream: createHttpUpstream({ url: `http://127.0.0.1:${(slow.address() as AddressInfo).port}/mcp` }),
        identity: async () => ({ ok: true, expiresAt: Math.floor(Date.now() / 1000) + 1 }),
      },
    ]);
    const r = await fetch(`${base}/mcp`, {
      method: "POST",
      headers,
      body: JSON.stringify({ jsonrpc: "2.0", id: 5, method: "ping" }),
    });
    // The caller's own credential is fine: nothing tells it to authenticate again.
    expect(r.status).toBe(502);
    expect(r.headers.get("www-authenticate")).toBeNull();
    expect(await r.json()).toMatchObject({ error: { code: -31008 } });
  });
});
