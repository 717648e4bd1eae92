import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CannedUpstream, startCannedUpstream } from "../helpers/canned-upstream.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

const KEY = `slow-${randomBytes(16).toString("hex")}`;
const HEADERS_TIMEOUT_MS = 1000;
const REQUEST_TIMEOUT_MS = 2000;

/** A client that trickles `text` one byte every `everyMs`; resolves when the server closes on it. */
function trickle(
  port: number,
  text: string,
  everyMs: number,
): { closed: Promise<{ ms: number; reply: string }>; socket: Socket } {
  const started = performance.now();
  const socket = connect(port, "127.0.0.1");
  let reply = "";
  let i = 0;
  const timer = setInterval(() => {
    if (i < text.length && socket.writable) socket.write(text[i++]!);
  }, everyMs);
  socket.setEncoding("latin1");
  socket.on("data", (d) => {
    reply += d;
  });
  const closed = new Promise<{ ms: number; reply: string }>((resolve) => {
    const done = () => {
      clearInterval(timer);
      resolve({ ms: performance.now() - started, reply });
    };
    socket.on("close", done);
    socket.on("error", () => {});
  });
  return { closed, socket };
}

async function ping(url: string): Promise<number> {
  const res = await request(url, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
  });
  await res.body.text();
  return res.statusCode;
}

describe("slowloris: the headers and request timeouts protect the gateway", () => {
  let upstream: CannedUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    upstream = await startCannedUpstream();
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url },
        limits: { headersTimeout: `${HEADERS_TIMEOUT_MS}ms`, requestTimeout: `${REQUEST_TIMEOUT_MS}ms` },
      },
      { MCP_API_KEY: KEY },
      "warn",
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it("drops a client that never finishes its headers soon after limits.headersTimeout", async () => {
    const head = `POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\n${"X-Slow: y\r\n".repeat(50)}`;
    const { closed } = trickle(gw.address.port, head, 50);
    const { ms, reply } = await closed;
    expect(ms).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 100);
    expect(ms).toBeLessThan(HEADERS_TIMEOUT_MS + 2500);
    expect(reply.split("\r\n")[0] ?? "").toMatch(/^HTTP\/1\.1 408 /);
  });

  it("drops a client that sends its headers and then trickles the body, after limits.requestTimeout", async () => {
    const body = '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + "x".repeat(200) + '"}}';
    const head =
      `POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const socket = connect(gw.address.port, "127.0.0.1");
    socket.write(head);
    const { closed } = (() => {
      const started = performance.now();
      let i = 0;
      let reply = "";
      const timer = setInterval(() => {
        if (i < body.length && socket.writable) socket.write(body[i++]!);
      }, 50);
      socket.setEncoding("latin1");
      socket.on("data", (d) => {
        reply += d;
      });
      socket.on("error", () => {});
      return {
        closed: new Promise<{ ms: number; reply: string }>((resolve) =>
          socket.on("close", () => {
            clearInterval(timer);
            resolve({ ms: performance.now() - started, reply });
          }),
        ),
      };
    })();
    const { ms, reply } = await closed;
    expect(ms).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
    expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS + 2500);
    // 408 (RFC 9110 §15.5.9), and the half-sent request never reached the upstream.
    expect(reply.split("\r\n")[0] ?? "").toMatch(/^HTTP\/1\.1 408 /);
    expect(upstream.seen.filter((s) => s.body.includes("pad"))).toHaveLength(0);
  });

  it("keeps serving normal clients while 200 slowloris connections are held open", async () => {
    const head = `POST /mcp HTTP/1.1\r\nHost: x\r\n${"X-Slow: y\r\n".repeat(100)}`;
    const slow = Array.from({ length: 200 }, () => trickle(gw.address.port, head, 100));
    try {
      for (let i = 0; i < 10; i++) {
        const started = performance.now();
        expect(await ping(gw.url)).toBe(200);
        expect(performance.now() - started).toBeLessThan(1000);
      }
      // …and every slow connection is gone within the timeout (plus the server's check interval).
      const results = await Promise.all(slow.map((s) => s.closed));
      expect(Math.max(...results.map((r) => r.ms))).toBeLessThan(HEADERS_TIMEOUT_MS + 2500);
    } finally {
      for (const s of slow) s.socket.destroy();
    }
  });
});
