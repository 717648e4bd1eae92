import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { createGate } from "../../src/gate/gate.js";
import { createHttpUpstream } from "../../src/gateway/http-upstream.js";
import { createGatewayServer, type Mount } from "../../src/gateway/server.js";
import { createLogger } from "../../src/observe/logger.js";
import { KEYS, twoCallers as verifier } from "../helpers/callers.js";
import { startCannedUpstream } from "../helpers/canned-upstream.js";
import { INIT, rawPost, rawSession } from "../helpers/client.js";
import { startTestGateway } from "../helpers/gateway.js";

/**
 * An HTTP upstream's connections are shared by every caller. Open GET streams hold theirs for as
 * long as they last, and a caller's slow calls hold theirs until answered: neither may leave other
 * callers' requests waiting for a connection that never frees.
 */

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

/** An upstream that mints sessions, keeps GET streams open for ever, and answers `slow` calls after 2 s. */
async function start({
  identity,
  ...options
}: {
  connections: number;
  maxInFlightPerCaller?: number;
  maxStreamsPerCaller?: number;
  maxSessions?: number;
  /** The mount's upstream identity hook. */
  identity?: Mount["identity"];
}) {
  const up = await startCannedUpstream((seen, res) => {
    if (seen.method === "GET") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(": open\n\n");
      return true;
    }
    const msg = seen.json ? JSON.parse(seen.body) : undefined;
    if (msg?.method === "initialize") {
      res.writeHead(200, { "content-type": "application/json", "mcp-session-id": randomUUID() }).end(
        JSON.stringify({
          jsonrpc: "2.0",
          id: msg.id,
          result: {
            protocolVersion: "2025-06-18",
            capabilities: {},
            serverInfo: { name: "u", version: "1" },
          },
        }),
      );
      return true;
    }
    if (msg?.params?.name === "slow") {
      setTimeout(
        () =>
          res
            .writeHead(200, { "content-type": "application/json" })
            .end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { content: [] } })),
        2_000,
      );
      return true;
    }
    return false;
  });
  cleanups.push(() => up.close());
  const gw = createGatewayServer({
    mounts: [
      {
        name: "default",
        path: "/mcp",
        gate: createGate({ verifiers: [verifier], publicUrl: "http://127.0.0.1/mcp" }),
        upstream: createHttpUpstream({ url: up.url, timeoutMs: 5_000, ...options }),
        ...(identity ? { identity } : {}),
      },
    ],
    logger: createLogger({ level: "silent" }),
    shutdownGraceMs: 100,
  });
  const { port } = await gw.listen(0, "127.0.0.1");
  cleanups.push(() => gw.close());
  const url = `http://127.0.0.1:${port}/mcp`;

  const slowCall = (id: number) => ({
    jsonrpc: "2.0",
    id,
    method: "tools/call",
    params: { name: "slow", arguments: {} },
  });

  async function session(who: keyof typeof KEYS) {
    const h = await rawSession(url, `Bearer ${KEYS[who]}`);
    return {
      h,
      /** Open the session's GET stream; resolves with its status once the head arrives. */
      async stream(): Promise<number> {
        const ac = new AbortController();
        cleanups.push(async () => ac.abort());
        const res = await fetch(url, { headers: { ...h, accept: "text/event-stream" }, signal: ac.signal });
        if (res.status !== 200) await res.text();
        return res.status;
      },
      ping: () => rawPost(url, { jsonrpc: "2.0", id: 1, method: "ping" }, h),
      slow: (id: number) => rawPost(url, slowCall(id), h),
      /** A slow call the client can give up on mid-flight (its socket closes). */
      abortableSlow(id: number): () => void {
        const ac = new AbortController();
        fetch(url, {
          method: "POST",
          headers: {
            ...h,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
          },
          body: JSON.stringify(slowCall(id)),
          signal: ac.signal,
        }).catch(() => {});
        return () => ac.abort();
      },
    };
  }
  return { session, up, gw };
}

const timed = async <T>(p: Promise<T>) => {
  const t0 = performance.now();
  const value = await p;
  return { value, ms: performance.now() - t0 };
};

describe("an HTTP upstream's connections are shared fairly", () => {
  it("open GET streams never take the connections requests need", async () => {
    const { session } = await start({ connections: 4 });
    // Alice's agents: six sessions, each with its standalone GET stream (more than the pool).
    // Each new session's initialize, and each stream, is served at once (without the streams'
    // own pool the fifth initialize waited for a connection that never freed).
    for (let i = 0; i < 6; i++) {
      const opened = await timed(session("alice"));
      expect(opened.ms).toBeLessThan(1_000);
      const stream = await timed(opened.value.stream());
      expect(stream.value).toBe(200);
      expect(stream.ms).toBeLessThan(1_000);
    }
    const bob = await timed(session("bob"));
    expect(bob.ms).toBeLessThan(1_000);
    const ping = await timed(bob.value.ping());
    expect(ping.value.status).toBe(200);
    expect(ping.ms).toBeLessThan(1_000);
  });

  it("bounds one caller's open streams (maxStreamsPerCaller): one more gets 429", async () => {
    const { session } = await start({ connections: 4, maxStreamsPerCaller: 3 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push(await (await session("alice")).stream());
    expect(statuses).toEqual([200, 200, 200, 429]);
    // Another caller's share is its own.
    expect(await (await session("bob")).stream()).toBe(200);
  });

  it("bounds the streams of all callers together (maxSessions): one more gets 503", async () => {
    const { session } = await start({ connections: 4, maxSessions: 3 });
    for (let i = 0; i < 3; i++) expect(await (await session("alice")).stream()).toBe(200);
    expect(await (await session("bob")).stream()).toBe(503);
  });

  it("one caller's slow calls leave its share of the connections to others: they are served at once", async () => {
    // Eight connections, a share of two: alone, Alice may use six; the last two are kept for others.
    const { session } = await start({ connections: 8, maxInFlightPerCaller: 2 });
    const alice = await session("alice");
    const calls = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((id) => alice.slow(id));
    await new Promise((r) => setTimeout(r, 200));
    const bob = await session("bob");
    const ping = await timed(bob.ping());
    expect(ping.value.status).toBe(200);
    expect(ping.ms).toBeLessThan(1_000);
    const statuses = (await Promise.all(calls)).map((r) => r.status).sort();
    // Six in flight at a time; the others are told to come back (429, Retry-After), not queued.
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429, 429]);
    const refused = (await Promise.all(calls)).find((r) => r.status === 429)!;
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(refused.json()).toMatchObject({ error: { code: -31002 } });
    // Once answered, the share is free again.
    expect((await alice.slow(6)).status).toBe(200);
  });

  it("takes the share before the identity hook: a refused call costs no identity (token exchange, assertion)", async () => {
    let hookRuns = 0;
    const { session } = await start({
      connections: 8,
      maxInFlightPerCaller: 2,
      identity: async () => {
        hookRuns++;
        return { ok: true, headers: { "x-caller-assertion": "signed" } };
      },
    });
    const alice = await session("alice");
    hookRuns = 0;
    const calls = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8, 9].map((id) => alice.slow(id)));
    expect(calls.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 429, 429, 429]);
    // Only the six forwarded calls were identified; the three refused ones cost nothing.
    expect(hookRuns).toBe(6);
    // Every hold was given back: the next call is forwarded, and identified, again.
    expect((await alice.slow(10)).status).toBe(200);
    expect(hookRuns).toBe(7);
  });

  it("gives back the share of calls their clients abort mid-flight: the caller is served again, and so is a burst", async () => {
    // Four connections, a share of two: alone, Alice may have two calls in flight.
    const { session, up, gw } = await start({ connections: 4, maxInFlightPerCaller: 2 });
    const alice = await session("alice");
    const bob = await session("bob");
    const slowSeen = () => up.seen.filter((s) => s.body.includes('"slow"')).length;
    // Three times her whole share of slow calls, each given up once the upstream is working on it.
    // A share not given back would refuse the next round (429) before it reached the upstream.
    for (let round = 0; round < 3; round++) {
      const seen = slowSeen();
      const aborts = [1, 2].map((id) => alice.abortableSlow(10 * round + id));
      await expect.poll(slowSeen, { timeout: 1_000 }).toBe(seen + 2);
      for (const abort of aborts) abort();
      await expect.poll(() => gw.inFlight(), { timeout: 1_000 }).toBe(0);
    }
    // The aborted calls' upstream answers are still 2 s away: had they kept their connections or
    // her share, this burst would wait for them or be refused. Every call is served, Bob's at once.
    const [a1, a2, b1, b2] = await Promise.all([
      alice.slow(100),
      alice.slow(101),
      timed(bob.ping()),
      timed(bob.ping()),
    ]);
    expect([a1.status, a2.status]).toEqual([200, 200]);
    for (const b of [b1, b2]) {
      expect(b.value.status).toBe(200);
      expect(b.ms).toBeLessThan(1_000);
    }
  });

  it("takes its share from the config (upstream.maxInFlightPerCaller) in `mcpgate serve`", async () => {
    const up = await startCannedUpstream((seen, res) => {
      if (!seen.body.includes('"slow"')) return false;
      const id = JSON.parse(seen.body).id;
      setTimeout(
        () =>
          res
            .writeHead(200, { "content-type": "application/json" })
            .end(JSON.stringify({ jsonrpc: "2.0", id, result: { content: [] } })),
        500,
      );
      return true;
    });
    cleanups.push(() => up.close());
    const key = "pool-config-key-0123456789abcdef";
    const gw = await startTestGateway(
      { upstream: { url: up.url, maxInFlightPerCaller: 110 } },
      { MCP_API_KEY: key },
      "warn",
    );
    cleanups.push(() => gw.close());
    const h = { authorization: `Bearer ${key}` };
    const call = (id: number) =>
      rawPost(
        gw.url,
        { jsonrpc: "2.0", id, method: "tools/call", params: { name: "slow", arguments: {} } },
        h,
      );
    // 128 connections and a share of 110: alone, one caller may have 110 in flight (the default
    // share, 32, would let it have 96 and refuse the rest).
    const statuses = (await Promise.all(Array.from({ length: 111 }, (_, i) => call(i + 1)))).map(
      (r) => r.status,
    );
    expect(statuses.filter((x) => x === 200)).toHaveLength(110);
    expect(statuses.filter((x) => x === 429)).toHaveLength(1);
  });

  it("bounds a principal's open streams like its sessions (sessions.perPrincipal) in `mcpgate serve`", async () => {
    // An upstream that lets one session hold any number of GET streams.
    const up = await startCannedUpstream((seen, res) => {
      if (seen.method !== "GET") return false;
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(": open\n\n");
      return true;
    });
    cleanups.push(() => up.close());
    const key = "pool-streams-key-0123456789abcdef";
    const gw = await startTestGateway(
      { upstream: { url: up.url }, sessions: { perPrincipal: 2 } },
      { MCP_API_KEY: key },
      "warn",
    );
    cleanups.push(() => gw.close());
    const auth = { authorization: `Bearer ${key}` };
    const init = await rawPost(gw.url, INIT, auth);
    const h = {
      ...auth,
      "mcp-session-id": init.headers.get("mcp-session-id")!,
      "mcp-protocol-version": "2025-06-18",
    };
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const ac = new AbortController();
      cleanups.push(async () => ac.abort());
      const res = await fetch(gw.url, { headers: { ...h, accept: "text/event-stream" }, signal: ac.signal });
      statuses.push(res.status);
    }
    expect(statuses).toEqual([200, 200, 429]);
  });
});
