import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { type CannedUpstream, startCannedUpstream } from "../helpers/canned-upstream.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

const KEY = `fault-${randomBytes(16).toString("hex")}`;
const AUTH = {
  authorization: `Bearer ${KEY}`,
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
};

async function post(url: string, body: unknown): Promise<{ status: number; text: string; ms: number }> {
  const started = performance.now();
  const res = await request(url, { method: "POST", headers: AUTH, body: JSON.stringify(body) });
  const text = await res.body.text();
  return { status: res.statusCode, text, ms: performance.now() - started };
}

const ping = (id: number) => ({ jsonrpc: "2.0", id, method: "ping" });
const call = (id: number) => ({
  jsonrpc: "2.0",
  id,
  method: "tools/call",
  params: { name: "stream", arguments: {} },
});

/** Data of the complete SSE events in `text` (an unterminated last event is not an event). */
function sseData(text: string): string[] {
  const complete = text.replace(/\r\n?/g, "\n");
  const end = complete.lastIndexOf("\n\n");
  return complete
    .slice(0, end === -1 ? 0 : end)
    .split("\n\n")
    .map((ev) =>
      ev
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n"),
    )
    .filter((d) => d !== "");
}

/** A server that accepts connections and never answers; `close()` frees them. */
async function startSilentServer(onRequest?: (res: import("node:http").ServerResponse) => void) {
  const sockets = new Set<Socket>();
  const server: Server = createServer((_req, res) => onRequest?.(res));
  server.on("connection", (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

async function gatewayFor(url: string, timeout = "30s"): Promise<TestGateway> {
  const gw = await startTestGateway(
    { upstream: { url, timeout }, guard: { failures: 1_000_000 } },
    { MCP_API_KEY: KEY },
    "warn",
  );
  cleanups.push(() => gw.close());
  return gw;
}

describe("upstream that accepts and never answers", () => {
  it("answers 504 within the configured upstream timeout and serves others meanwhile", async () => {
    const silent = await startSilentServer();
    cleanups.push(() => silent.close());
    const gw = await gatewayFor(silent.url, "600ms");
    const pending = Promise.all([post(gw.url, ping(1)), post(gw.url, ping(2)), post(gw.url, ping(3))]);
    // While three requests wait on the dead upstream, the gateway itself answers at once.
    const health = await request(new URL("/healthz", gw.url));
    expect(health.statusCode).toBe(200);
    await health.body.text();
    const bad = await request(gw.url, {
      method: "POST",
      body: "{}",
      headers: { "content-type": "application/json" },
    });
    expect(bad.statusCode).toBe(401);
    await bad.body.text();
    for (const r of await pending) {
      expect(r.status).toBe(504);
      expect(r.ms).toBeGreaterThanOrEqual(550);
      expect(r.ms).toBeLessThan(3000);
      expect(JSON.parse(r.text)).toMatchObject({ jsonrpc: "2.0", error: { code: expect.any(Number) } });
      expect(r.text).not.toContain("127.0.0.1");
    }
  });

  it("ends the response when the upstream sends JSON headers and then never the body", async () => {
    const stalled = await startSilentServer((res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "100" });
      res.write('{"jsonrpc":"2.0",');
    });
    cleanups.push(() => stalled.close());
    const gw = await gatewayFor(stalled.url, "600ms");
    const started = performance.now();
    const outcome = await request(gw.url, {
      method: "POST",
      headers: AUTH,
      body: JSON.stringify(ping(1)),
    }).then(
      async (res) => {
        try {
          await res.body.text();
          return `status ${res.statusCode}, complete`;
        } catch {
          return `status ${res.statusCode}, cut`;
        }
      },
      () => "refused",
    );
    const ms = performance.now() - started;
    // Once the head is relayed the gateway can only cut the body; it must not hang forever.
    expect(ms).toBeLessThan(3000);
    expect(outcome).not.toBe("status 200, complete");
  });
});

describe("upstream killed in the middle of an SSE stream", () => {
  /** Upstream whose "stream" tool sends one progress event and half of the next, then dies. */
  async function startDyingUpstream(): Promise<CannedUpstream> {
    const up = await startCannedUpstream((seen, res) => {
      if (!seen.body.includes('"tools/call"')) return false;
      const id = JSON.parse(seen.body).id;
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(
        `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/progress", params: { progress: 1 } })}\n\n`,
      );
      setTimeout(() => {
        res.write(`data: {"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"te`);
        setTimeout(() => res.socket?.destroy(), 50);
      }, 50);
      return true;
    });
    cleanups.push(() => up.close());
    return up;
  }

  it("gives the client a clean end with the complete events only, and keeps serving other clients", async () => {
    const up = await startDyingUpstream();
    const gw = await gatewayFor(up.url);
    const [streamed, ...others] = await Promise.all([
      post(gw.url, call(7)),
      post(gw.url, ping(1)),
      post(gw.url, ping(2)),
    ]);
    expect(streamed.status).toBe(200);
    expect(streamed.ms).toBeLessThan(3000);
    // The complete progress event arrives; the torn result is not a complete event. The stream had
    // no event ids (no resumption): its unanswered request is answered by the gateway.
    const events = sseData(streamed.text).map((d) => JSON.parse(d));
    expect(events.map((e) => e.method ?? e.error?.code)).toEqual(["notifications/progress", -31004]);
    expect(events[1]).toMatchObject({ jsonrpc: "2.0", id: 7 });
    for (const o of others) expect(o).toMatchObject({ status: 200 });
    // Afterwards, the same gateway and upstream keep working, for streams too.
    expect((await post(gw.url, ping(3))).status).toBe(200);
    const again = await post(gw.url, call(8));
    expect(sseData(again.text).map((d) => JSON.parse(d).id ?? null)).toEqual([null, 8]);
    expect(gw.server.inFlight()).toBe(0);
  });

  it("answers 502 while the upstream is gone and recovers when it is back on the same port", async () => {
    const up = await startDyingUpstream();
    const port = new URL(up.url).port;
    const gw = await gatewayFor(up.url, "2s");
    expect((await post(gw.url, ping(1))).status).toBe(200);
    const streamed = post(gw.url, call(2));
    // Wait until the stream is under way, then the whole upstream goes away.
    while (!up.seen.some((s) => s.body.includes('"tools/call"'))) await new Promise((r) => setTimeout(r, 5));
    await up.close();
    expect((await streamed).status).toBe(200);
    const down = await post(gw.url, ping(3));
    expect(down.status).toBe(502);
    expect(down.ms).toBeLessThan(2000);
    // Restart an upstream on the same port: the gateway's pool reconnects.
    const back = await startCannedUpstream();
    await back.close();
    const revived = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      // Answers echo the id they were sent (the gateway's wire id), as any JSON-RPC server does.
      req.on("end", () =>
        res
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ jsonrpc: "2.0", id: JSON.parse(body).id, result: {} })),
      );
    });
    await new Promise<void>((r) => revived.listen(Number(port), "127.0.0.1", r));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          revived.closeAllConnections();
          revived.close(() => r());
        }),
    );
    const recovered = await post(gw.url, ping(4));
    expect(recovered.status).toBe(200);
    expect(JSON.parse(recovered.text)).toEqual({ jsonrpc: "2.0", id: 4, result: {} });
  });
});

describe("upstream whose SSE chunks split a character", () => {
  it("relays a multi-byte character cut across chunks whole, event by event as they arrive", async () => {
    const text = "héllo 🙂 wörld €";
    const up = await startCannedUpstream((seen, res) => {
      if (!seen.body.includes('"tools/call"')) return false;
      const id = JSON.parse(seen.body).id;
      const event = Buffer.from(
        `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", id, result: { content: [{ type: "text", text }] } })}\n\n`,
      );
      // Cut inside the 4-byte emoji and inside the 2-byte "é", with pauses between the pieces.
      const emoji = event.indexOf(Buffer.from("🙂"));
      const accent = event.indexOf(Buffer.from("é"));
      const cuts = [accent + 1, emoji + 1, emoji + 3, event.length];
      res.writeHead(200, { "content-type": "text/event-stream" });
      let from = 0;
      const next = () => {
        const to = cuts.shift();
        if (to === undefined) return void res.end();
        res.write(event.subarray(from, to));
        from = to;
        setTimeout(next, 20);
      };
      next();
      return true;
    });
    cleanups.push(() => up.close());
    const gw = await gatewayFor(up.url);
    const r = await post(gw.url, call(7));
    expect(r.status).toBe(200);
    const [data] = sseData(r.text);
    expect(JSON.parse(data!)).toMatchObject({ id: 7, result: { content: [{ text }] } });
  });
});

describe("upstream that opens its SSE answer with a byte-order mark", () => {
  it("reads the event as the client will (mark dropped), so an answer it did not ask for is still dropped", async () => {
    const up = await startCannedUpstream((seen, res) => {
      if (!seen.body.includes('"tools/call"')) return false;
      // Not the wire id the gateway sent: the client's own id, guessed, with a result of its choosing.
      const forged = {
        jsonrpc: "2.0",
        id: 7,
        result: { content: [{ type: "text", text: "forged-answer" }] },
      };
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`\uFEFFdata: ${JSON.stringify(forged)}\n\n`);
      return true;
    });
    cleanups.push(() => up.close());
    const gw = await gatewayFor(up.url);
    const r = await post(gw.url, call(7));
    expect(r.text).not.toContain("forged-answer");
  });
});

describe("upstream whose SSE event holds data that is not JSON", () => {
  it("relays its event id only, never the data (a laxer parser could read it as an answer)", async () => {
    const up = await startCannedUpstream((seen, res) => {
      if (!seen.body.includes('"tools/call"')) return false;
      res.writeHead(200, { "content-type": "text/event-stream" });
      // NaN is not JSON; some parsers take it. The answer itself follows, well formed.
      res.write(
        `id: e1\ndata: {"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"lax-answer"}]},"x":NaN}\n\n`,
      );
      res.end(
        `id: e2\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: JSON.parse(seen.body).id, result: { content: [] } })}\n\n`,
      );
      return true;
    });
    cleanups.push(() => up.close());
    const gw = await gatewayFor(up.url);
    const r = await post(gw.url, call(7));
    expect(r.text).not.toContain("lax-answer");
    expect(r.text).toContain("id: e1");
    expect(sseData(r.text).map((d) => JSON.parse(d).id)).toEqual([7]);
  });
});

describe("upstream whose SSE event never ends", () => {
  it("cuts the stream past the event bound, keeps the complete events, and stops reading the upstream", async () => {
    const MiB = 1024 * 1024;
    let sent = 0;
    let upstreamClosed = false;
    const up = await startCannedUpstream((seen, res) => {
      if (!seen.body.includes('"tools/call"')) return false;
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(
        `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/progress", params: { progress: 1 } })}\n\n`,
      );
      res.write("data: ");
      // One data line without end, 64 KiB at a time as the gateway reads it, at most 32 MiB.
      const chunk = "x".repeat(64 * 1024);
      const pump = () => {
        while (!res.destroyed && sent < 32 * MiB) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
      };
      res.on("close", () => {
        upstreamClosed = true;
      });
      pump();
      return true;
    });
    cleanups.push(() => up.close());
    const gw = await gatewayFor(up.url);
    const r = await post(gw.url, call(7));
    expect(r.status).toBe(200);
    // Cut well before the upstream's 32 MiB: the event bound is 8 MiB (MAX_SSE_EVENT_BYTES).
    expect(r.ms).toBeLessThan(5000);
    // The complete event, then the gateway's answer to the request whose answer was cut.
    const events = sseData(r.text).map((d) => JSON.parse(d));
    expect(events.map((e) => e.method ?? e.error?.code)).toEqual(["notifications/progress", -31007]);
    expect(events[1]).toMatchObject({ jsonrpc: "2.0", id: 7 });
    expect(r.text).not.toContain("xxxx");
    await expect.poll(() => upstreamClosed, { timeout: 2000 }).toBe(true);
    expect(sent).toBeLessThan(16 * MiB);
    // The gateway is unharmed.
    expect((await post(gw.url, ping(1))).status).toBe(200);
    expect(gw.server.inFlight()).toBe(0);
  });
});

/** An upstream whose "stream" tool sends one progress event (with an event id when `ids`), then ends the stream (`end`) or goes quiet. */
async function startProgressOnlyUpstream(o: { ids: boolean; end: boolean }): Promise<CannedUpstream> {
  const up = await startCannedUpstream((seen, res) => {
    if (!seen.body.includes('"tools/call"')) return false;
    res.writeHead(200, { "content-type": "text/event-stream" });
    const progress = JSON.stringify({
      jsonrpc: "2.0",
      method: "notifications/progress",
      params: { progress: 1 },
    });
    const event = `${o.ids ? "id: e1\n" : ""}event: message\ndata: ${progress}\n\n`;
    if (o.end) res.end(event);
    else res.write(event);
    return true;
  });
  cleanups.push(() => up.close());
  return up;
}

describe("upstream that ends its SSE answer without the answer", () => {
  it("answers the request itself when the stream cannot be resumed (no event ids): -31007", async () => {
    const gw = await gatewayFor((await startProgressOnlyUpstream({ ids: false, end: true })).url);
    const r = await post(gw.url, call(5));
    const events = sseData(r.text).map((d) => JSON.parse(d));
    expect(events.map((e) => e.method ?? e.error?.code)).toEqual(["notifications/progress", -31007]);
    expect(events[1]).toMatchObject({ jsonrpc: "2.0", id: 5 });
  });

  it("leaves a resumable stream's request to its client (it may resume with Last-Event-ID)", async () => {
    const gw = await gatewayFor((await startProgressOnlyUpstream({ ids: true, end: true })).url);
    const r = await post(gw.url, call(5));
    expect(sseData(r.text).map((d) => JSON.parse(d).method)).toEqual(["notifications/progress"]);
    expect(r.text).toContain("id: e1");
  });
});

describe("upstream whose resumable SSE answer goes quiet", () => {
  it("is ended at the idle bound without an answer of the gateway's (its client resumes it and gets the upstream's)", async () => {
    const up = await startProgressOnlyUpstream({ ids: true, end: false });
    const gw = await startTestGateway(
      { upstream: { url: up.url, streamIdleTimeout: "300ms" }, guard: { failures: 1_000_000 } },
      { MCP_API_KEY: KEY },
      "warn",
    );
    cleanups.push(() => gw.close());
    const r = await post(gw.url, call(5));
    expect(r.ms).toBeLessThan(3_000);
    // Only the upstream's event: an error of the gateway's for id 5 now would be a second answer
    // to it once the client resumes the stream and the upstream replays its own.
    expect(sseData(r.text).map((d) => JSON.parse(d).method)).toEqual(["notifications/progress"]);
    expect(r.text).toContain("id: e1");
  });
});
