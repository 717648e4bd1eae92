import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CannedUpstream, startCannedUpstream } from "../helpers/canned-upstream.js";
import { type SpawnedGateway, spawnGateway } from "./spawn-gateway.js";

const KEY = `sigterm-${randomBytes(16).toString("hex")}`;
const SLOW_MS = 1500;

/** One POST on its own connection (no keep-alive), resolving with the status and body, or the error code. */
function post(port: number, body: unknown): Promise<{ status?: number; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        path: "/mcp",
        method: "POST",
        agent: false,
        headers: {
          authorization: `Bearer ${KEY}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => {
          text += d;
        });
        res.on("end", () => resolve({ status: res.statusCode!, body: text }));
        res.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
      },
    );
    req.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end(JSON.stringify(body));
  });
}

describe("SIGTERM during load on a spawned mcpgate serve", () => {
  let upstream: CannedUpstream;
  let gw: SpawnedGateway;

  beforeAll(async () => {
    // tools/call takes SLOW_MS upstream; everything else is answered at once.
    upstream = await startCannedUpstream((seen, res) => {
      if (!seen.body.includes('"tools/call"')) return false;
      // The id on the wire is the gateway's; the call's own marker says which call this is.
      const { id, params } = JSON.parse(seen.body);
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json" }).end(
          JSON.stringify({
            jsonrpc: "2.0",
            id,
            result: { content: [{ type: "text", text: `done ${params.arguments.n}` }] },
          }),
        );
      }, SLOW_MS);
      return true;
    });
    gw = await spawnGateway(
      { upstream: { url: upstream.url }, limits: { shutdownGrace: "10s" }, logging: { level: "info" } },
      { MCP_API_KEY: KEY },
    );
  }, 30_000);
  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
  });

  it("finishes in-flight requests, accepts no new ones and exits 0", async () => {
    // Background load of quick requests, running until the gateway is gone.
    let stopLoad = false;
    const quick: Array<{ status?: number; error?: string }> = [];
    const load = (async () => {
      for (let i = 0; !stopLoad; i++)
        quick.push(await post(gw.port, { jsonrpc: "2.0", id: 1000 + i, method: "ping" }));
    })();

    const warm = Date.now() + 10_000;
    while (!quick.some((q) => q.status === 200) && Date.now() < warm)
      await new Promise((r) => setTimeout(r, 10));
    expect(quick.filter((q) => q.status === 200).length).toBeGreaterThan(0);

    // Ten slow calls in flight…
    const slow = Array.from({ length: 10 }, (_, i) =>
      post(gw.port, {
        jsonrpc: "2.0",
        id: i,
        method: "tools/call",
        params: { name: "echo", arguments: { n: i } },
      }),
    );
    const deadline = Date.now() + 10_000;
    while (upstream.seen.filter((s) => s.body.includes('"tools/call"')).length < 10 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));

    // …when SIGTERM arrives.
    const signalledAt = performance.now();
    gw.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 200));
    const late = await post(gw.port, { jsonrpc: "2.0", id: 99, method: "ping" });
    expect(late.error).toBe("ECONNREFUSED");

    const results = await Promise.all(slow);
    results.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body!)).toMatchObject({ id: i, result: { content: [{ text: `done ${i}` }] } });
    });
    const code = await gw.exited;
    stopLoad = true;
    await load;
    expect(code).toBe(0);
    // It waited for the slow calls, but no longer than needed.
    const ms = performance.now() - signalledAt;
    expect(ms).toBeLessThan(SLOW_MS + 3000);
    // The background load saw answers or refused connections, never a 5xx.
    expect(quick.every((q) => q.status === undefined || q.status < 500)).toBe(true);
    expect(gw.output()).toContain("SIGTERM received");
  });
});
