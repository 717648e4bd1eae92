import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import { createGate } from "../../src/gate/gate.js";
import { createHttpUpstream } from "../../src/gateway/http-upstream.js";
import { createGatewayServer } from "../../src/gateway/server.js";
import { createLogger } from "../../src/observe/logger.js";
import { INIT } from "../helpers/client.js";
import { type SpawnedGateway, spawnGateway } from "./spawn-gateway.js";

/**
 * Issue 13 item 4: a client that sends requests and never reads its answers must not make the
 * gateway buffer them. The gateway runs as its own process (`mcpgate serve`) so that its resident
 * memory is measured alone; the client is a raw socket that never reads. Bounded in time (5 s of
 * flooding per case) and count (3 sockets).
 */
const KEY = "backpressure-test-key-0123456789abcdef";
const FLOOD_MS = 5_000;
const SOCKETS = 3;
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A POST over a raw socket that never reads what comes back (its receive window fills, then closes). */
function neverReadingPost(port: number, body: unknown, headers: Record<string, string> = {}): Socket {
  const text = JSON.stringify(body);
  const sock = connect(port, "127.0.0.1");
  sock.pause();
  const head = Object.entries({
    host: `127.0.0.1:${port}`,
    authorization: `Bearer ${KEY}`,
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
  })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  sock.write(`POST /mcp HTTP/1.1\r\n${head}\r\n${text}`);
  sock.on("error", () => {});
  return sock;
}

/** Listen on 127.0.0.1 and close (all connections) after the test; the MCP URL. */
async function listenForTest(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

describe("backpressure: an HTTP upstream that streams forever to clients that never read", () => {
  it("stops reading the upstream, keeps the gateway's memory bounded, and aborts the upstream request when the client goes", async () => {
    let written = 0;
    let open = 0;
    let closedByGateway = 0;
    const pad = "x".repeat(4096);
    const upstream: Server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        open++;
        let n = 0;
        const pump = () => {
          for (;;) {
            const ev = `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: ++n, message: pad } })}\n\n`;
            written += ev.length;
            if (!res.write(ev)) return void res.once("drain", pump);
          }
        };
        res.on("close", () => {
          open--;
          closedByGateway++;
        });
        pump();
      });
    });
    const upstreamUrl = await listenForTest(upstream);
    const gw: SpawnedGateway = await spawnGateway({ upstream: { url: upstreamUrl } }, { MCP_API_KEY: KEY });
    cleanups.push(() => gw.stop());
    await sleep(500);
    const before = gw.rssMiB();
    const sockets = Array.from({ length: SOCKETS }, (_, i) =>
      neverReadingPost(gw.port, { jsonrpc: "2.0", id: i + 1, method: "tools/call", params: { name: "x" } }),
    );
    await sleep(FLOOD_MS);
    const during = gw.rssMiB();
    const writtenDuring = written;
    await sleep(1_000);
    const stalled = written - writtenDuring;
    console.log(
      `[backpressure/http] upstream wrote ${(writtenDuring / MiB).toFixed(1)} MiB in ${FLOOD_MS} ms to ${SOCKETS} non-reading clients` +
        `, ${(stalled / MiB).toFixed(2)} MiB in the next second; gateway RSS ${before.toFixed(1)} → ${during.toFixed(1)} MiB`,
    );
    expect(open).toBe(SOCKETS);
    // Kernel socket buffers (upstream→gateway and gateway→client) and the gateway's stream
    // high-water marks are all that can hold bytes: tens of MiB at most, never the stream.
    expect(writtenDuring).toBeLessThan(64 * MiB);
    expect(stalled).toBeLessThan(8 * MiB);
    expect(during - before).toBeLessThan(64);
    // The client goes away: the upstream request is aborted.
    for (const s of sockets) s.destroy();
    const deadline = Date.now() + 5_000;
    while (open > 0 && Date.now() < deadline) await sleep(25);
    expect(open).toBe(0);
    expect(closedByGateway).toBe(SOCKETS);
  }, 30_000);
});

describe("backpressure: a client that never reads, bounded in time", () => {
  it("loses its stream after slowClientMs, and the upstream request is aborted, though its socket stays open", async () => {
    let upstreamClosed = 0;
    const pad = "y".repeat(8192);
    const upstream: Server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        const pump = () => {
          while (
            res.write(
              `data: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/message", params: { data: pad } })}\n\n`,
            )
          );
          res.once("drain", pump);
        };
        res.on("close", () => upstreamClosed++);
        pump();
      });
    });
    const upstreamUrl = await listenForTest(upstream);
    const audits: Array<{ type: string; reason?: string }> = [];
    const gate = createGate({
      verifiers: [createStaticKeyVerifier({ key: KEY })],
      publicUrl: "http://127.0.0.1/mcp",
      observer: { audit: (e) => void audits.push(e) },
    });
    const gw = createGatewayServer({
      mounts: [
        {
          name: "default",
          path: "/mcp",
          gate,
          upstream: createHttpUpstream({ url: upstreamUrl }),
          owner: { slowClientMs: 1_000 },
        },
      ],
      logger: createLogger({ level: "silent" }),
      shutdownGraceMs: 100,
    });
    const { port } = await gw.listen(0, "127.0.0.1");
    cleanups.push(() => gw.close());
    const sock = neverReadingPost(port, {
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "x" },
    });
    cleanups.push(() => void sock.destroy());
    const started = Date.now();
    while (upstreamClosed === 0 && Date.now() - started < 10_000) await sleep(50);
    expect(upstreamClosed).toBe(1);
    // Buffers fill within a second or so; then one slowClientMs; never the whole 10 s.
    expect(Date.now() - started).toBeLessThan(8_000);
    // Audited: the operator sees why the stream ended.
    expect(audits.filter((e) => e.type === "stream_ended")).toEqual([
      expect.objectContaining({ reason: "client_too_slow" }),
    ]);
  }, 20_000);
});

describe("backpressure: a stdio upstream flooding progress notifications to clients that never read", () => {
  it("pauses the child's output and keeps the gateway's memory bounded", async () => {
    const countDir = mkdtempSync(join(tmpdir(), "mcpgate-flood-"));
    cleanups.push(() => rmSync(countDir, { recursive: true, force: true }));
    const gw = await spawnGateway(
      {
        upstream: {
          command: [process.execPath, join(import.meta.dirname, "fixtures/flood-stdio-server.mjs")],
          env: { FLOOD_COUNT_DIR: countDir },
        },
      },
      { MCP_API_KEY: KEY },
    );
    cleanups.push(() => gw.stop());
    const auth = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };
    const sockets: Socket[] = [];
    // Three sessions (one child each), each with a flooding call whose client never reads.
    for (let i = 0; i < SOCKETS; i++) {
      const init = await fetch(gw.url, {
        method: "POST",
        headers: { ...auth, accept: "application/json, text/event-stream" },
        body: JSON.stringify(INIT),
      });
      await init.text();
      const sid = init.headers.get("mcp-session-id")!;
      expect(sid).toBeTruthy();
      sockets.push(
        neverReadingPost(
          gw.port,
          {
            jsonrpc: "2.0",
            id: 2,
            method: "tools/call",
            params: { name: "flood", _meta: { progressToken: 9 } },
          },
          { "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" },
        ),
      );
    }
    const before = gw.rssMiB();
    await sleep(FLOOD_MS);
    const during = gw.rssMiB();
    // Bytes written by all the children together.
    const writtenBy = () =>
      readdirSync(countDir)
        .filter((f) => !f.endsWith(".tmp"))
        .reduce((n, f) => n + Number(readFileSync(join(countDir, f), "utf8")), 0);
    const w1 = writtenBy();
    await sleep(1_000);
    const w2 = writtenBy();
    console.log(
      `[backpressure/stdio] ${SOCKETS} flooding children wrote ${(w1 / MiB).toFixed(1)} MiB in ${FLOOD_MS} ms` +
        `, ${((w2 - w1) / MiB).toFixed(2)} MiB in the next second; gateway RSS ${before.toFixed(1)} → ${during.toFixed(1)} MiB`,
    );
    // Each child blocks on its own stdout once the gateway stops reading it.
    expect(w1).toBeGreaterThan(0);
    expect(w1).toBeLessThan(64 * MiB);
    expect(w2 - w1).toBeLessThan(4 * MiB);
    expect(during - before).toBeLessThan(64);
    for (const s of sockets) s.destroy();
  }, 60_000);
});
