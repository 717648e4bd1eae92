/**
 * The cost of tracing (docs/tracing.md "Cost"): tools/call through real `mcpgate serve` processes
 * in front of one upstream process, same run, alternating rounds:
 *   - off:      tracing not configured (the tracing calls are the OpenTelemetry API's no-ops);
 *   - on:       OTEL_EXPORTER_OTLP_ENDPOINT set, sampler always_on (every request exported over
 *               OTLP/HTTP protobuf to a receiver in this process that reads and discards);
 *   - unsampled: the SDK on with sampler always_off (context manager and propagation, no recording);
 *   - baseline: the same gateway with no tracing code: this commit's tree with the tracing modules
 *               stubbed out (or, with --baseline REV, another commit's tree), extracted with
 *               `git archive` (no change to the repository), same node_modules; --baseline none: skip.
 * Then, in-process, the per-request cost of the no-op tracing calls themselves (no SDK).
 * Loopback only, bounded (~rounds × gateways × roundMs).
 *   npx tsx bench/tracing.ts [--rounds 6] [--round-ms 3000] [--concurrency 16] [--baseline REV]
 */

import { execSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { findFreePort } from "../src/gateway/free-port.js";
import { startRequestSpan } from "../src/observe/tracing.js";
import { startUpstreamSpan } from "../src/observe/tracing-upstream.js";
import { traceStateStore, traceVerifier } from "../src/observe/tracing-wrappers.js";
import { load, openSession, summarize } from "./lib.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "6" },
    "round-ms": { type: "string", default: "3000" },
    concurrency: { type: "string", default: "16" },
    baseline: { type: "string" },
  },
});
const rounds = Number(values.rounds);
const roundMs = Number(values["round-ms"]);
const concurrency = Number(values.concurrency);
const KEY = "bench-static-key-0123456789abcdef";
const ROOT = new URL("..", import.meta.url).pathname;

// A receiver standing in for a collector: reads each export, answers 200, keeps only counts.
let exports = 0;
let exportedBytes = 0;
const receiver = createServer((req, res) => {
  req.on("data", (c: Buffer) => {
    exportedBytes += c.length;
  });
  req.on("end", () => {
    exports++;
    res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
  });
});
await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
const otlpUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

const upstreamProc = spawn(
  process.execPath,
  ["--import", "tsx", new URL("./upstream-process.ts", import.meta.url).pathname],
  { stdio: ["ignore", "pipe", "inherit"] },
);
const [line] = (await once(createInterface({ input: upstreamProc.stdout! }), "line")) as [string];
const upstreamUrl = (JSON.parse(line) as { url: string }).url;

/**
 * The "no tracing code" gateway: this commit's tree (`git archive`, so nothing in the repository
 * changes) with the tracing modules replaced by identity stubs — the request span, the wrappers and
 * the forward hook do nothing and cost a plain function call — and the logger's trace mixin removed.
 * With `--baseline REV`, the tree of REV as it is instead.
 */
let baselineDir: string | undefined;
let baselineLabel = "";
if (values.baseline !== "none") {
  baselineDir = mkdtempSync(join(tmpdir(), "mcpgate-bench-notrace-"));
  const rev = values.baseline ?? "HEAD";
  execSync(`git archive ${rev} | tar -x -C ${baselineDir}`, { cwd: ROOT, shell: "/bin/bash" });
  symlinkSync(join(ROOT, "node_modules"), join(baselineDir, "node_modules"));
  if (values.baseline) baselineLabel = values.baseline;
  else {
    baselineLabel = "HEAD with tracing stubbed out";
    const stub = (file: string, text: string) => writeFileSync(join(baselineDir!, file), text);
    stub(
      "src/observe/tracing.ts",
      `const NOOP = { context: undefined, traceId: undefined, run: (fn) => fn(), describe() {}, end() {} };
export const TRACE_ATTR = {};
export const startRequestSpan = () => NOOP;
export const activeTraceId = () => undefined;
export const traceLogFields = () => ({});
export const markSpanFailed = () => {};
export const recordingParent = () => undefined;
export const withChildSpan = (_n, _a, fn) => fn(undefined);
export const tracer = () => undefined;
`,
    );
    stub(
      "src/observe/tracing-wrappers.ts",
      `export const traceVerifier = (v) => v;
export const traceKeyStore = (s) => s;
export const traceStateStore = (s) => s;
export const traceUpstreamIdentity = (h) => h;
export const noteAuthLookup = () => {};
export const wantsHttpChildSpans = () => false;
`,
    );
    stub("src/gateway/tracing-forward.ts", "export const traceForward = () => (ctx, next) => next(ctx);\n");
    const logger = join(baselineDir, "src/observe/logger.ts");
    writeFileSync(logger, readFileSync(logger, "utf8").replace(/\n\s*mixin: traceLogFields,/, ""));
  }
}

/** A real `mcpgate serve` process (default configuration, request log at info to /dev/null). */
async function startGateway(root: string, env: Record<string, string>) {
  const port = await findFreePort("127.0.0.1");
  const proc = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(root, "src/cli/main.ts"),
      "serve",
      "--upstream",
      upstreamUrl,
      "--port",
      String(port),
    ],
    { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, MCP_API_KEY: KEY, ...env }, cwd: root },
  );
  const url = `http://127.0.0.1:${port}/mcp`;
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(new URL("/healthz", url)).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, pid: proc.pid!, stop: () => proc.kill("SIGTERM") };
}

/**
 * CPU time (ns) the process has used, all threads (/proc/<pid>/task/<tid>/schedstat). On a busy
 * machine CPU per request is steadier than throughput: another process's load slows a gateway
 * down but does not make it burn more CPU per request.
 */
function cpuNs(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // A thread that ended meanwhile.
    }
  }
  return total;
}

const CLEAN_ENV = {
  OTEL_EXPORTER_OTLP_ENDPOINT: "",
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "",
  OTEL_SERVICE_NAME: "",
  OTEL_TRACES_SAMPLER: "",
};
const gateways = {
  off: await startGateway(ROOT, CLEAN_ENV),
  on: await startGateway(ROOT, {
    ...CLEAN_ENV,
    OTEL_EXPORTER_OTLP_ENDPOINT: otlpUrl,
    OTEL_TRACES_SAMPLER: "always_on",
    OTEL_BSP_SCHEDULE_DELAY: "200",
  }),
  // The SDK on (context manager, propagation, spans created) but nothing sampled: what the
  // machinery costs without recording or exporting.
  unsampled: await startGateway(ROOT, {
    ...CLEAN_ENV,
    OTEL_EXPORTER_OTLP_ENDPOINT: otlpUrl,
    OTEL_TRACES_SAMPLER: "always_off",
  }),
  ...(baselineDir ? { baseline: await startGateway(baselineDir, CLEAN_ENV) } : {}),
};
type Which = keyof typeof gateways;
const names = Object.keys(gateways) as Which[];
const sessions = Object.fromEntries(
  await Promise.all(
    names.map(
      async (n) => [n, await openSession(gateways[n]!.url, { authorization: `Bearer ${KEY}` })] as const,
    ),
  ),
) as Record<Which, Awaited<ReturnType<typeof openSession>>>;
const call = (n: Which) => () => sessions[n].call("add", { a: 1, b: 2 });

for (const n of names) await load(call(n), concurrency, 1000); // warm-up

const latencies = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<Which, number[]>;
const secs = Object.fromEntries(names.map((n) => [n, 0])) as Record<Which, number>;
const perRound = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<Which, number[]>;
const cpu = Object.fromEntries(names.map((n) => [n, 0])) as Record<Which, number>;
for (let r = 0; r < rounds; r++) {
  // Rotate the order each round so no gateway always runs first (or last) on a warm machine.
  const order = names.map((_, i) => names[(i + r) % names.length]!);
  for (const n of order) {
    const before = cpuNs(gateways[n]!.pid);
    const res = await load(call(n), concurrency, roundMs);
    cpu[n] += cpuNs(gateways[n]!.pid) - before;
    latencies[n].push(...res.latencies);
    secs[n] += res.seconds;
    perRound[n].push(res.latencies.length / res.seconds);
  }
}
const f = (x: number) => x.toFixed(2);
const s = Object.fromEntries(names.map((n) => [n, summarize(latencies[n], secs[n])])) as Record<
  Which,
  ReturnType<typeof summarize>
>;
console.log(`tools/call, concurrency ${concurrency}, ${rounds} rotating rounds of ${roundMs} ms each`);
for (const n of names) {
  const range = `${f(Math.min(...perRound[n]))}–${f(Math.max(...perRound[n]))}`;
  console.log(
    `${n.padEnd(9)} ${f(s[n].rps)} req/s (rounds ${range})  p50 ${f(s[n].p50)} ms  p99 ${f(s[n].p99)} ms  (n=${s[n].n})`,
  );
}
console.log(
  `tracing on (always_on) / off: ${f(s.on.rps / s.off.rps)}   added p50 ${f(s.on.p50 - s.off.p50)} ms`,
);
if (s.baseline)
  console.log(`tracing off / no tracing code (${baselineLabel}): ${f(s.off.rps / s.baseline.rps)}`);
// Paired: the ratio within each rotation (the gateways ran back to back), then the median over
// rotations — steadier than the totals when the machine's load changes during the run.
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const paired = (a: Which, b: Which) => median(perRound[a].map((x, i) => x / perRound[b][i]!));
console.log(
  `paired median of per-rotation throughput ratios: on/off ${f(paired("on", "off"))}, unsampled/off ${f(paired("unsampled", "off"))}`,
);
if (s.baseline) console.log(`paired median, off / no tracing code: ${f(paired("off", "baseline"))}`);
const cpuUs = (n: Which) => cpu[n] / 1000 / latencies[n].length;
for (const n of names) console.log(`${n.padEnd(9)} gateway CPU ${f(cpuUs(n))} µs per request`);
console.log(
  `gateway CPU per request, on / off: ${f(cpuUs("on") / cpuUs("off"))}, unsampled / off: ${f(cpuUs("unsampled") / cpuUs("off"))}`,
);
if (s.baseline)
  console.log(`gateway CPU per request, off / no tracing code: ${f(cpuUs("off") / cpuUs("baseline"))}`);

// Round-to-round spread of the off gateway against itself: what "within noise" means on this run.
const offRounds = perRound.off;
const mean = offRounds.reduce((a, b) => a + b, 0) / offRounds.length;
const sd = Math.sqrt(offRounds.reduce((a, b) => a + (b - mean) ** 2, 0) / offRounds.length);
console.log(`noise: off gateway round-to-round standard deviation ${f((100 * sd) / mean)} % of its mean`);

for (const n of names) await sessions[n].close();
for (const n of names) gateways[n]!.stop();
await new Promise((r) => setTimeout(r, 500)); // let the traced gateway's shutdown flush land
console.log(`OTLP exports received: ${exports} (${f(exportedBytes / 1024 / 1024)} MiB)`);

// In-process: the tracing calls one request makes, with no SDK registered (the "off" path).
const verifier = traceVerifier({ kind: "static_key", verify: async (_t: string) => ({ ok: true }) });
const state = traceStateStore(
  {
    admit: async (_i: { buckets: readonly unknown[] }) => ({}),
    bindSession: async () => {},
    removeSession: async () => {},
  },
  "memory",
);
const headers = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };
async function perRequest(n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers, remoteAddress: "127.0.0.1" });
    await t.run(async () => {
      await verifier.verify(KEY);
      t.describe({ mcpMethod: "tools/call", tool: "add", sessionId: "0123456789", principal: "static" });
      await state.admit({ buckets: [] });
      const up = startUpstreamSpan({ upstream: "default", transport: "http", url: upstreamUrl });
      const h: Record<string, string> = {};
      up.inject(h);
      up.end({ status: 200 });
    });
    t.end({ status: 200, decision: "allow" });
  }
  return ((performance.now() - t0) * 1e6) / n;
}
async function bare(n: number): Promise<number> {
  const v = async (_t: string) => ({ ok: true });
  const a = async () => ({});
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await (async () => {
      await v(KEY);
      await a();
    })();
  }
  return ((performance.now() - t0) * 1e6) / n;
}
const traced: number[] = [];
const plain: number[] = [];
for (let r = 0; r < 6; r++) {
  traced.push(await perRequest(100_000));
  plain.push(await bare(100_000));
}
const perReqUs = 1e6 / s.off.rps / 1; // wall µs per request at this concurrency's throughput
console.log(
  `no-op tracing calls per request (no SDK): ${f(median(traced) - median(plain))} ns over the same awaits without them ` +
    `(${f(median(traced))} vs ${f(median(plain))} ns); the off gateway spends ${f(perReqUs)} µs of wall time per request`,
);

receiver.close();
upstreamProc.kill("SIGTERM");
if (baselineDir) rmSync(baselineDir, { recursive: true, force: true });
