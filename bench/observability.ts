/**
 * The cost of observability on the request path: tools/call through a gateway with logs silenced,
 * no metrics and no audit (baseline) vs one that logs every request (info, to a discarding stream),
 * writes the audit file and counts metrics, same run, alternating rounds. Both have the guard on
 * (it is on by default). Loopback only, bounded (~rounds × 2 × roundMs).
 *   npx tsx bench/observability.ts [--rounds 4] [--round-ms 3000] [--concurrency 16]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { createStaticKeyVerifier } from "../src/authn/static-key.js";
import { startDemoHttpServer } from "../src/cli/demo-server.js";
import { validateConfig } from "../src/config.js";
import { createGate } from "../src/gate/gate.js";
import { startGateway } from "../src/gateway/assembly/assemble.js";
import { createFileAuditSink } from "../src/observe/audit.js";
import { createGuard } from "../src/observe/guard.js";
import { createLogger } from "../src/observe/logger.js";
import { createMetrics } from "../src/observe/metrics.js";
import { createObserver } from "../src/observe/observer.js";
import { load, openSession, summarize } from "./lib.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "4" },
    "round-ms": { type: "string", default: "3000" },
    concurrency: { type: "string", default: "16" },
  },
});
const rounds = Number(values.rounds);
const roundMs = Number(values["round-ms"]);
const concurrency = Number(values.concurrency);
const KEY = "bench-static-key-0123456789abcdef";
const dir = mkdtempSync(join(tmpdir(), "mcpgate-bench-obs-"));
let logBytes = 0;
const discard = new Writable({
  write(chunk, _enc, cb) {
    logBytes += chunk.length;
    cb();
  },
});

const upstream = await startDemoHttpServer(0);
const plain = await startGateway({
  config: validateConfig({ listen: { port: 0 }, upstream: { url: upstream.url } }, {}),
  env: { MCP_API_KEY: KEY },
  logger: createLogger({ level: "silent" }),
});
const observed = await startGateway({
  config: validateConfig(
    {
      listen: { port: 0 },
      upstream: { url: upstream.url },
      metrics: { listen: "127.0.0.1:0" },
      logging: { level: "info", audit: join(dir, "audit.jsonl") },
    },
    {},
  ),
  env: { MCP_API_KEY: KEY },
  logger: createLogger({ level: "info", destination: discard }),
});
const a = await openSession(plain.url, { authorization: `Bearer ${KEY}` });
const b = await openSession(observed.url, { authorization: `Bearer ${KEY}` });
const call = (s: typeof a) => () => s.call("add", { a: 1, b: 2 });

await load(call(a), concurrency, 1000);
await load(call(b), concurrency, 1000);

const results = { plain: [] as number[], observed: [] as number[] };
const secs = { plain: 0, observed: 0 };
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? (["plain", "observed"] as const) : (["observed", "plain"] as const);
  for (const which of order) {
    const res = await load(call(which === "plain" ? a : b), concurrency, roundMs);
    results[which].push(...res.latencies);
    secs[which] += res.seconds;
  }
}
const p = summarize(results.plain, secs.plain);
const o = summarize(results.observed, secs.observed);
const f = (x: number) => x.toFixed(2);
console.log(`tools/call, concurrency ${concurrency}, ${rounds} alternating rounds of ${roundMs} ms each`);
console.log(`no logs/metrics/audit  ${f(p.rps)} req/s  p50 ${f(p.p50)} ms  p99 ${f(p.p99)} ms  (n=${p.n})`);
console.log(`logs+metrics+audit     ${f(o.rps)} req/s  p50 ${f(o.p50)} ms  p99 ${f(o.p99)} ms  (n=${o.n})`);
console.log(`throughput ratio observed/plain: ${f(o.rps / p.rps)}   added p50: ${f(o.p50 - p.p50)} ms`);
console.log(`log bytes per observed request: ${f(logBytes / o.n)}`);

// In-process, no network (steadier on a busy machine): gate.admit + the per-request summary,
// without vs with guard, observer, metrics and the audit file.
const body = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "tools/call",
  params: { name: "add", arguments: { a: 1 } },
});
const headers = {
  authorization: `Bearer ${KEY}`,
  "content-type": "application/json",
  "mcp-protocol-version": "2025-06-18",
};
const verifiers = [createStaticKeyVerifier({ key: KEY })];
const bare = createGate({ verifiers, publicUrl: "http://127.0.0.1:1/mcp" });
const observer = createObserver({
  logger: createLogger({ level: "info", destination: discard }),
  metrics: createMetrics({ defaultMetrics: false }),
  auditSinks: [createFileAuditSink({ path: join(dir, "micro.jsonl") })],
});
const full = createGate({ verifiers, publicUrl: "http://127.0.0.1:1/mcp", guard: createGuard(), observer });
async function perOp(gate: typeof bare, withSummary: boolean, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const d = await gate.admit({ method: "POST", headers, bodyText: body, remoteAddress: "127.0.0.1" });
    if (withSummary)
      observer.request({
        requestId: "bench",
        httpMethod: "POST",
        rpcMethod: "tools/call",
        tool: "add",
        status: d.ok ? 200 : 500,
        decision: "allow",
        latencyMs: 1,
        upstreamMs: 1,
      });
  }
  return ((performance.now() - t0) * 1000) / n;
}
const micro = { bare: [] as number[], full: [] as number[] };
for (let r = 0; r < 6; r++) {
  micro.bare.push(await perOp(bare, false, 20_000));
  micro.full.push(await perOp(full, true, 20_000));
}
const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
console.log(
  `gate.admit in-process: bare ${f(med(micro.bare))} µs/op, with guard+observer+metrics+audit ${f(med(micro.full))} µs/op, ratio ${f(med(micro.full) / med(micro.bare))}`,
);
await observer.close();
await a.close();
await b.close();
await plain.close();
await observed.close();
await upstream.close();
rmSync(dir, { recursive: true, force: true });
