import { afterEach, describe, expect, it } from "vitest";
import { createGate } from "../../src/gate/gate.js";
import { createHttpUpstream } from "../../src/gateway/http-upstream.js";
import { createGatewayServer } from "../../src/gateway/server.js";
import { createLogger } from "../../src/observe/logger.js";
import { KEYS, twoCallers } from "../helpers/callers.js";
import { startCannedUpstream } from "../helpers/canned-upstream.js";
import { INIT, rawPost } from "../helpers/client.js";

/**
 * A caller at its share of an HTTP upstream's connections is refused before the mount's identity
 * hook runs: the hook may call a token endpoint (token exchange) or sign an assertion, work a
 * caller over its share must not be able to make the gateway do.
 */

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

describe("the caller's share of the upstream is taken before the identity hook", () => {
  it("refuses calls past the share (429) without running the hook for them, and runs it again once the share frees", async () => {
    // Answers `slow` calls after a second; anything else (initialize…) at once, canned.
    const up = await startCannedUpstream((seen, res) => {
      const msg = seen.json ? JSON.parse(seen.body) : undefined;
      if (msg?.params?.name !== "slow") return false;
      setTimeout(
        () =>
          res
            .writeHead(200, { "content-type": "application/json" })
            .end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { content: [] } })),
        1_000,
      );
      return true;
    });
    cleanups.push(() => up.close());
    let hookRuns = 0;
    const gw = createGatewayServer({
      mounts: [
        {
          name: "default",
          path: "/mcp",
          gate: createGate({ verifiers: [twoCallers], publicUrl: "http://127.0.0.1/mcp" }),
          // Eight connections, a share of two: alone, a caller may have six in flight.
          upstream: createHttpUpstream({
            url: up.url,
            timeoutMs: 5_000,
            connections: 8,
            maxInFlightPerCaller: 2,
          }),
          identity: async () => {
            hookRuns++;
            return { ok: true, headers: { "x-caller-assertion": "signed" } };
          },
        },
      ],
      logger: createLogger({ level: "silent" }),
      shutdownGraceMs: 100,
    });
    const { port } = await gw.listen(0, "127.0.0.1");
    cleanups.push(() => gw.close());
    const url = `http://127.0.0.1:${port}/mcp`;
    const auth = { authorization: `Bearer ${KEYS.alice}` };
    const init = await rawPost(url, INIT, auth);
    expect(init.status).toBe(200);
    const h = {
      ...auth,
      "mcp-session-id": init.headers.get("mcp-session-id")!,
      "mcp-protocol-version": "2025-06-18",
    };
    const slow = (id: number) =>
      rawPost(url, { jsonrpc: "2.0", id, method: "tools/call", params: { name: "slow", arguments: {} } }, h);

    hookRuns = 0;
    const calls = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8, 9].map(slow));
    const statuses = calls.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429, 429]);
    // Only the six forwarded calls cost an identity; the three refused ones cost nothing.
    expect(hookRuns).toBe(6);
    // Every hold was given back: the next call is forwarded (and identified) again.
    expect((await slow(10)).status).toBe(200);
    expect(hookRuns).toBe(7);
  });
});
