import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * Issue 14 item 2: globs with several `*` used to compile to a backtracking regex run on the
 * caller's string (a 240 KB name blocked /healthz for seconds). Hostile names are now refused by
 * length (400) and globs match in linear time: /healthz stays responsive during a burst of the
 * worst calls that are still within the limits.
 */
const KEY = "static-test-key-glob-stall-0123456789abcdef";
const auth = { authorization: `Bearer ${KEY}` };

describe("hostile names against multi-star globs (issue 14 item 2)", () => {
  let upstream: RecordingUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    upstream = await startRecordingUpstream({ stateless: true, jsonResponse: true });
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url },
        auth: { staticKey: { scopes: [] } },
        policy: {
          tools: [
            { match: "db_*_drop_*_table", scopes: ["admin"] },
            { match: "a*b*c*d*e*f", scopes: ["admin"] },
          ],
          resources: [
            { match: "file:///home/*/private/*/keys/*.key", scopes: ["admin"] },
            { match: "file:///home/*/private/*.key", scopes: ["admin"] },
          ],
        },
      },
      { MCP_API_KEY: KEY },
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const call = (id: number, name: string) =>
    rawPost(gw.url, { jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: {} } }, auth);
  const read = (id: number, uri: string) =>
    rawPost(gw.url, { jsonrpc: "2.0", id, method: "resources/read", params: { uri } }, auth);

  it("answers a 240 KB tool name with 400 before any glob runs", async () => {
    const before = upstream.seen.length;
    const res = await call(1, `db_${"_drop_".repeat(40_000)}`);
    expect(res.status).toBe(400);
    expect(res.text).toMatch(/longer than 512/);
    expect(upstream.seen.length).toBe(before);
  });

  it("keeps /healthz responsive while the worst in-limit names are matched", async () => {
    const healthz = new URL("/healthz", gw.url).href;
    // Worst cases for a backtracking matcher that still pass the length limits: almost-matches
    // that make every `*` try every split (cubic for a 3-star glob on an 8 KB URI).
    const hostileUri = `file:///home/${"x/private/y/keys/".repeat(470)}z.kez`;
    const hostileName = `db_${"_drop_".repeat(84)}tabl`;
    const hostileName2 = `a${"bcde".repeat(127)}`;
    expect(hostileUri.length).toBeLessThan(8192);
    let stop = false;
    const latencies: number[] = [];
    const poll = (async () => {
      while (!stop) {
        const t0 = performance.now();
        const r = await fetch(healthz);
        await r.text();
        latencies.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const attacks: Array<Promise<{ status: number; text: string }>> = [];
    for (let i = 0; i < 10; i++) {
      attacks.push(read(100 + i, hostileUri), call(200 + i, hostileName), call(300 + i, hostileName2));
    }
    const answers = await Promise.all(attacks);
    stop = true;
    await poll;
    for (const a of answers) {
      expect(a.status).toBe(200);
      // Denied by the default (no rule matched): nothing was forwarded.
      expect(a.text).toMatch(/Forbidden/);
    }
    expect(latencies.length).toBeGreaterThan(0);
    console.info(
      `/healthz during the attack: ${latencies.length} probes, max ${Math.max(...latencies).toFixed(1)} ms`,
    );
    // With the backtracking regex one such name alone held the event loop ~10 s (a 3-star glob on
    // the URI: ~0.3 s per request); the linear matcher takes microseconds. The bound leaves room for
    // a loaded 2-core machine.
    expect(Math.max(...latencies)).toBeLessThan(2000);
  });
});
