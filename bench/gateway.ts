/**
 * tools/call through the gateway vs the same upstream direct, same run, alternating rounds.
 * Prints requests/s, p50/p99 and the ratios. Loopback only, bounded (~rounds × 2 × roundMs).
 *   npx tsx bench/gateway.ts [--rounds 4] [--round-ms 3000] [--concurrency 16]
 */

import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { findFreePort } from "../src/gateway/free-port.js";
import { load, openSession, summarize } from "./lib.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "4" },
    "round-ms": { type: "string", default: "3000" },
    concurrency: { type: "string", default: "16" },
    "log-level": { type: "string", default: "info" },
  },
});
const rounds = Number(values.rounds);
const roundMs = Number(values["round-ms"]);
const concurrency = Number(values.concurrency);
const KEY = "bench-static-key-0123456789abcdef";

// The upstream runs in its own process: gateway and upstream would otherwise share one event loop.
const child = spawn(
  process.execPath,
  ["--import", "tsx", new URL("./upstream-process.ts", import.meta.url).pathname],
  {
    stdio: ["ignore", "pipe", "inherit"],
  },
);
const [line] = (await once(createInterface({ input: child.stdout! }), "line")) as [string];
const upstream = {
  url: (JSON.parse(line) as { url: string }).url,
  close: async () => void child.kill("SIGTERM"),
};
// The gateway is a real `mcpgate serve` process with its default configuration (one JSON log line
// per request at info, to /dev/null here), as an operator would run it.
const port = await findFreePort("127.0.0.1");
const gwProc = spawn(
  process.execPath,
  [
    "--import",
    "tsx",
    new URL("../src/cli/main.ts", import.meta.url).pathname,
    "serve",
    "--upstream",
    upstream.url,
    "--port",
    String(port),
    "--log-level",
    values["log-level"]!,
  ],
  { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, MCP_API_KEY: KEY } },
);
const gw = { url: `http://127.0.0.1:${port}/mcp`, close: async () => void gwProc.kill("SIGTERM") };
for (let i = 0; i < 100; i++) {
  const ok = await fetch(new URL("/healthz", gw.url)).then(
    (r) => r.ok,
    () => false,
  );
  if (ok) break;
  await new Promise((r) => setTimeout(r, 100));
}
const direct = await openSession(upstream.url);
const gated = await openSession(gw.url, { authorization: `Bearer ${KEY}` });
const call = (s: typeof direct) => () => s.call("add", { a: 1, b: 2 });

// Warm-up both paths.
await load(call(direct), concurrency, 1000);
await load(call(gated), concurrency, 1000);

const results = { direct: [] as number[], gateway: [] as number[] };
let secs = { direct: 0, gateway: 0 };
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? (["direct", "gateway"] as const) : (["gateway", "direct"] as const);
  for (const which of order) {
    const res = await load(call(which === "direct" ? direct : gated), concurrency, roundMs);
    results[which].push(...res.latencies);
    secs = { ...secs, [which]: secs[which] + res.seconds };
  }
}
const d = summarize(results.direct, secs.direct);
const g = summarize(results.gateway, secs.gateway);
const f = (x: number) => x.toFixed(2);
console.log(
  `tools/call, concurrency ${concurrency}, ${rounds} alternating rounds of ${roundMs} ms each; gateway log level ${values["log-level"]}`,
);
console.log(`direct   ${f(d.rps)} req/s  p50 ${f(d.p50)} ms  p99 ${f(d.p99)} ms  (n=${d.n})`);
console.log(`gateway  ${f(g.rps)} req/s  p50 ${f(g.p50)} ms  p99 ${f(g.p99)} ms  (n=${g.n})`);
console.log(`throughput ratio gateway/direct: ${f(g.rps / d.rps)}   (target ≥ 0.70)`);
console.log(`added p50 latency: ${f(g.p50 - d.p50)} ms   (target ≤ 0.50 ms)`);
await direct.close();
await gated.close();
await gw.close();
await upstream.close();
