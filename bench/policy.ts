/**
 * Cost of per-tool authorization + rate limiting, and of per-caller list filtering.
 *
 * 1. tools/call through three gateways in front of the same demo upstream, alternating rounds:
 *    plain (no policy, no limits), policy + rate limits in memory, policy + rate limits in Redis
 *    (when 127.0.0.1:6379 / MCPGATE_TEST_REDIS_URL answers). Prints req/s, p50 and the ratio to plain.
 * 2. tools/list of a 500-tool upstream through a gateway with and without a policy (half hidden).
 * 3. In-process: filtering one 500-tool list response as JSON and as SSE vs JSON.parse+stringify.
 *
 *   npx tsx bench/policy.ts [--rounds 3] [--round-ms 2000] [--concurrency 16]
 */
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { Pool } from "undici";
import { compilePolicy } from "../src/authz/policy.js";
import { startDemoHttpServer } from "../src/cli/demo-server.js";
import { validateConfig } from "../src/config.js";
import type { Identity } from "../src/core/identity.js";
import { type RunningGateway, startGateway } from "../src/gateway/assembly/assemble.js";
import { listRequestIds } from "../src/mcp/list-filter.js";
import { createSseRewriter, rewriteJsonBody } from "../src/mcp/response-rewriter.js";
import { createLogger } from "../src/observe/logger.js";
import { load, openSession, summarize } from "./lib.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    "round-ms": { type: "string", default: "2000" },
    concurrency: { type: "string", default: "16" },
  },
});
const rounds = Number(values.rounds);
const roundMs = Number(values["round-ms"]);
const concurrency = Number(values.concurrency);
const KEY = "bench-static-key-0123456789abcdef";
const REDIS = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const f = (x: number, d = 2) => x.toFixed(d);

const POLICY = {
  tools: [
    ...Array.from({ length: 18 }, (_, i) => ({ match: `ns${i}_*`, scopes: [`ns${i}`] })),
    { match: "delete_*", scopes: ["admin"] },
    { match: "*", scopes: ["tools:call"] },
  ],
  resources: [{ match: "*", scopes: ["tools:call"] }],
  prompts: [{ match: "*", scopes: ["tools:call"] }],
};
const LIMITS = {
  perPrincipal: { limit: 1_000_000_000, window: "1m" },
  tools: [{ match: "ad?", limit: 1_000_000_000, window: "1m" }],
};

async function redisUp(): Promise<boolean> {
  const { Redis } = await import("ioredis");
  const r = new Redis(REDIS, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 500 });
  try {
    await r.connect();
    await r.ping();
    return true;
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

async function gateway(upstreamUrl: string, extra: Record<string, unknown>): Promise<RunningGateway> {
  return startGateway({
    config: validateConfig(
      {
        listen: { port: 0 },
        upstream: { url: upstreamUrl },
        auth: { staticKey: { scopes: ["tools:call"] } },
        ...extra,
      },
      {},
    ),
    env: { MCP_API_KEY: KEY },
    logger: createLogger({ level: "silent" }),
  });
}

/** Alternate rounds over named workloads; returns req/s and p50 per name. */
async function compare(work: Record<string, () => Promise<void>>) {
  const names = Object.keys(work);
  for (const n of names) await load(work[n]!, concurrency, 500);
  const lat: Record<string, number[]> = {};
  const secs: Record<string, number> = {};
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? names : [...names].reverse();
    for (const n of order) {
      const res = await load(work[n]!, concurrency, roundMs);
      lat[n] = [...(lat[n] ?? []), ...res.latencies];
      secs[n] = (secs[n] ?? 0) + res.seconds;
    }
  }
  return Object.fromEntries(names.map((n) => [n, summarize(lat[n]!, secs[n]!)]));
}

function print(title: string, res: Record<string, ReturnType<typeof summarize>>, base: string) {
  console.log(`\n${title}`);
  for (const [n, s] of Object.entries(res)) {
    const ratio =
      n === base ? "" : `  ratio ${f(s.rps / res[base]!.rps)}  +p50 ${f(s.p50 - res[base]!.p50)} ms`;
    console.log(
      `  ${n.padEnd(22)} ${f(s.rps, 0).padStart(7)} req/s  p50 ${f(s.p50)} ms  p99 ${f(s.p99)} ms${ratio}`,
    );
  }
}

// 1. Authorization + rate limiting per request.
const demo = await startDemoHttpServer(0);
const withRedis = await redisUp();
const gws: Record<string, RunningGateway> = {
  plain: await gateway(demo.url, {}),
  "policy+limits memory": await gateway(demo.url, { policy: POLICY, rateLimit: LIMITS }),
};
if (withRedis) {
  gws["policy+limits redis"] = await gateway(demo.url, {
    policy: POLICY,
    rateLimit: LIMITS,
    state: { redis: REDIS, prefix: `mcpgate-bench-${randomBytes(3).toString("hex")}:` },
  });
}
const sessions = Object.fromEntries(
  await Promise.all(
    Object.entries(gws).map(
      async ([n, g]) => [n, await openSession(g.url, { authorization: `Bearer ${KEY}` })] as const,
    ),
  ),
);
const callRes = await compare(
  Object.fromEntries(Object.entries(sessions).map(([n, s]) => [n, () => s.call("add", { a: 1, b: 2 })])),
);
print(
  `tools/call, concurrency ${concurrency}, ${rounds} alternating rounds × ${roundMs} ms${withRedis ? "" : " (Redis not reachable: skipped)"}`,
  callRes,
  "plain",
);
for (const s of Object.values(sessions)) await s.close();
for (const g of Object.values(gws)) await g.close();
await demo.close();

// 2. tools/list of 500 tools through the gateway.
const names = Array.from({ length: 500 }, (_, i) => (i % 2 === 0 ? `tool_${i}` : `ns${i % 18}_tool_${i}`));
const big = createServer(async (req, res) => {
  const mcp = new McpServer({ name: "big", version: "1" });
  for (const n of names)
    mcp.registerTool(n, { description: `Tool ${n} does a thing with its input.` }, async () => ({
      content: [],
    }));
  const t = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on("close", () => void t.close());
  await mcp.connect(t);
  await t.handleRequest(req, res);
});
await new Promise<void>((r) => big.listen(0, "127.0.0.1", r));
const bigUrl = `http://127.0.0.1:${(big.address() as AddressInfo).port}/mcp`;
const listGws = {
  unfiltered: await gateway(bigUrl, {}),
  filtered: await gateway(bigUrl, { policy: POLICY }),
};
const pools = new Map<string, Pool>();
const listOnce = (url: string) => async () => {
  const u = new URL(url);
  let pool = pools.get(u.origin);
  if (!pool) {
    pool = new Pool(u.origin, { connections: 64 });
    pools.set(u.origin, pool);
  }
  const r = await pool.request({
    path: u.pathname,
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      authorization: `Bearer ${KEY}`,
      "mcp-protocol-version": "2025-06-18",
    },
    body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
  });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`tools/list ${r.statusCode}: ${text.slice(0, 200)}`);
};
const listRes = await compare({
  unfiltered: listOnce(listGws.unfiltered.url),
  filtered: listOnce(listGws.filtered.url),
});
print(
  "tools/list of 500 tools through the gateway (JSON; filtered: 250 visible, 20 rules)",
  listRes,
  "unfiltered",
);
for (const p of pools.values()) await p.close();
for (const g of Object.values(listGws)) await g.close();
big.closeAllConnections();
big.close();

// 3. In-process filtering of one 500-tool response.
const policy = compilePolicy(POLICY);
const who: Identity = { principal: "static", kind: "static_key", subject: "s", scopes: ["tools:call"] };
const visible = (k: "tools" | "resources" | "prompts", n: string) => policy.isVisible(who, k, n);
const response = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  result: {
    tools: names.map((name) => ({
      name,
      description: `Tool ${name} does a thing with its input.`,
      inputSchema: { type: "object", properties: { x: { type: "string" } } },
    })),
  },
});
const plan = {
  listIds: listRequestIds([{ type: "request", id: 1, method: "tools/list" }]),
  visible,
  era: "2025" as const,
  localResponses: [],
};
const sse = `event: message\ndata: ${response}\n\n`;
function time(fn: () => void, ms = 1000): number {
  for (let i = 0; i < 50; i++) fn();
  let n = 0;
  const end = performance.now() + ms;
  const t = performance.now();
  while (performance.now() < end) {
    fn();
    n++;
  }
  return ((performance.now() - t) * 1000) / n;
}
const baseline = time(() => JSON.stringify(JSON.parse(response)));
const json = time(() => rewriteJsonBody(response, plan));
const sseUs = time(() => {
  const rw = createSseRewriter(plan);
  rw.push(sse);
  rw.end();
});
console.log(
  `\nfiltering one 500-tool list (${(response.length / 1024).toFixed(0)} KiB, 250 kept) in process`,
);
console.log(`  JSON.parse+stringify baseline  ${f(baseline, 0)} µs`);
console.log(`  JSON rewrite                    ${f(json, 0)} µs  ratio ${f(json / baseline)}`);
console.log(`  SSE rewrite                     ${f(sseUs, 0)} µs  ratio ${f(sseUs / baseline)}`);
