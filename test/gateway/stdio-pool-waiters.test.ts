import { afterEach, describe, expect, it } from "vitest";
import { KEYS, rawPost, startStdioGateway, type TestGateway, waitFor } from "./stdio-helpers.js";

/**
 * 2026-07-28 requests to a stdio upstream are served by a pool of children, each owned by one
 * principal (src/gateway/stdio/pool.ts). A request finding all of its principal's children busy
 * waits for one, but at most 32 per child it owns wait (QUEUE_PER_CHILD): one more is answered
 * 429 -31002 at once (the caller's own share, as past its share of an HTTP upstream's
 * connections), with Retry-After, rather than queued without bound. Another principal's requests
 * never wait behind that queue.
 */

const META = { "io.modelcontextprotocol/protocolVersion": "2026-07-28" };
const QUEUE_PER_CHILD = 32;

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

/** A 2026-era stateless `sleep` call, as a v2 client sends it (the SDK 1.x client cannot). */
const sleep = (g: TestGateway, key: string, id: number, ms: number) =>
  rawPost(
    g.url,
    key,
    { jsonrpc: "2.0", id, method: "tools/call", params: { name: "sleep", arguments: { ms }, _meta: META } },
    {
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/call",
      "mcp-name": "sleep",
      accept: "application/json",
    },
  );

describe("the stdio pool bounds one principal's waiting requests", () => {
  it("answers 429 -31002 past 32 waiters per child, while another principal is served at once", async () => {
    // A pool of two: each principal may own one child (half the pool).
    gw = await startStdioGateway({ poolSize: 2 });
    const g = gw;
    // Alice's child is busy for 3 s...
    const busy = sleep(g, KEYS.alice, 1, 3_000);
    expect(await waitFor(() => g.upstream.childPids().length === 1)).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    // ...and 32 more of her requests wait for it: the 33rd is one too many.
    const waiting = Array.from({ length: QUEUE_PER_CHILD + 1 }, (_, i) => sleep(g, KEYS.alice, 2 + i, 1));
    // Settled by the gateway's close if an expectation below fails first.
    for (const p of [busy, ...waiting]) p.catch(() => {});
    const t0 = performance.now();
    const first = await Promise.race(waiting.map((p, i) => p.then((res) => ({ res, i }))));
    expect(performance.now() - t0).toBeLessThan(1_500);
    expect(first.res.status).toBe(429);
    expect(first.res.headers.get("retry-after")).toBe("1");
    // A transport-level refusal: no id (spec T-1125), the caller's share code.
    expect(await first.res.json()).toEqual({
      jsonrpc: "2.0",
      id: null,
      error: { code: -31002, message: "Too Many Requests: too many requests in flight for this caller" },
    });
    expect(first.i).toBe(QUEUE_PER_CHILD);

    // Bob is not queued behind Alice: his own child serves him now.
    const t1 = performance.now();
    const bob = await sleep(g, KEYS.bob, 1, 1);
    expect(bob.status).toBe(200);
    expect(await bob.json()).toMatchObject({ id: 1, result: { content: [{ text: "slept" }] } });
    expect(performance.now() - t1).toBeLessThan(1_500);
    expect(g.upstream.childPids()).toHaveLength(2);

    // Alice's 32 waiters are all served once her child frees; exactly one was refused.
    const statuses = (await Promise.all([busy, ...waiting])).map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1 + QUEUE_PER_CHILD);
    expect(statuses.filter((s) => s === 429)).toHaveLength(1);
    // The queue is free again: her next request is served.
    expect((await sleep(g, KEYS.alice, 99, 1)).status).toBe(200);
  });
});
