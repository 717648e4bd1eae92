import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CannedUpstream, startCannedUpstream } from "../helpers/canned-upstream.js";
import { type SpawnedGateway, spawnGateway } from "./spawn-gateway.js";

const KEY = `idle-${randomBytes(16).toString("hex")}`;
/**
 * 10 000 idle connections. The gateway runs in its own process (its own descriptor table), so
 * this process needs one descriptor per connection: with `ulimit -n` below ~10 500 the count is
 * scaled down to what fits (reported in the test name's output).
 */
const WANTED = Number(process.env.MCPGATE_IDLE_CONNECTIONS ?? 10_000);
const HEADERS_TIMEOUT_S = 10;

function fdLimit(): number {
  // /proc/self/limits: "Max open files   <soft>   <hard>   files"
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === "unlimited" ? Number.POSITIVE_INFINITY : Number(soft);
  } catch {
    return 1024;
  }
}

async function openIdle(port: number, n: number, into: Socket[]): Promise<void> {
  const BATCH = 200; // well below the listen backlog (511)
  for (let done = 0; done < n; done += BATCH) {
    await Promise.all(
      Array.from(
        { length: Math.min(BATCH, n - done) },
        () =>
          new Promise<void>((resolve, reject) => {
            const s = connect(port, "127.0.0.1");
            s.once("connect", () => {
              into.push(s);
              resolve();
            });
            s.once("error", reject);
          }),
      ),
    );
  }
}

async function ping(url: string): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const res = await request(url, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
  });
  await res.body.text();
  return { status: res.statusCode, ms: performance.now() - started };
}

const count = Math.min(WANTED, Math.max(100, fdLimit() - 500));

describe(`${count} idle connections`, () => {
  let upstream: CannedUpstream;
  let gw: SpawnedGateway;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    upstream = await startCannedUpstream();
    gw = await spawnGateway(
      {
        upstream: { url: upstream.url },
        limits: { headersTimeout: `${HEADERS_TIMEOUT_S}s`, requestTimeout: "60s" },
        logging: { level: "warn" },
      },
      { MCP_API_KEY: KEY },
    );
  }, 30_000);
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await gw?.stop();
    await upstream?.close();
  });

  it("keeps memory bounded, serves new clients, and reaps the idle sockets at headersTimeout", async () => {
    if (count < WANTED)
      console.warn(`ulimit -n is ${fdLimit()}: testing ${count} idle connections, not ${WANTED}`);
    // Warm the gateway up so the baseline includes its steady-state heap.
    for (let i = 0; i < 20; i++) expect((await ping(gw.url)).status).toBe(200);
    const before = gw.rssMiB();
    const fdsBefore = gw.openFds();
    const openedAt = performance.now();
    await openIdle(gw.port, count, sockets);
    const openMs = performance.now() - openedAt;
    expect(sockets).toHaveLength(count);

    // New clients are still served promptly while every idle socket is held.
    const pings = [];
    for (let i = 0; i < 20; i++) pings.push(await ping(gw.url));
    expect(pings.every((p) => p.status === 200)).toBe(true);
    const worst = Math.max(...pings.map((p) => p.ms));
    expect(worst).toBeLessThan(1000);

    const after = gw.rssMiB();
    const fdsHeld = gw.openFds() - fdsBefore;
    const perConnKiB = ((after - before) * 1024) / count;
    console.log(
      `${count} idle connections opened in ${Math.round(openMs)} ms; gateway RSS ${before.toFixed(1)} → ${after.toFixed(1)} MiB (${perConnKiB.toFixed(1)} KiB per connection); slowest ping ${worst.toFixed(1)} ms`,
    );
    // Bounded: a few KiB each (Node's socket + parser), nowhere near a buffer per connection.
    expect(after - before).toBeLessThan(Math.max(64, (count * 16) / 1024));

    // Connections that never send a request are dropped at headersTimeout: the gateway's descriptor
    // count goes back to where it was. (Counted on the gateway's side: a client may believe in a
    // connection the server never accepted when the accept queue overflowed.)
    expect(fdsHeld).toBeGreaterThanOrEqual(count * 0.95);
    // Each connection has headersTimeout from its own start; the last one opened openMs after the first.
    const deadline = openedAt + openMs + (HEADERS_TIMEOUT_S + 10) * 1000;
    while (gw.openFds() > fdsBefore + 20 && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, 250));
    const reapS = (performance.now() - openedAt) / 1000;
    console.log(
      `gateway descriptors: ${fdsBefore} before, ${fdsBefore + fdsHeld} with the idle connections, ${gw.openFds()} ${reapS.toFixed(1)} s after they were opened`,
    );
    expect(gw.openFds()).toBeLessThanOrEqual(fdsBefore + 20);
    expect((await ping(gw.url)).status).toBe(200);
  }, 60_000);
});
