/**
 * tools/call through the gateway vs the same upstream direct vs a bare pass-through proxy (no MCP
 * awareness, one SHA-256 key check: bench/bare-proxy.ts), same run, for a stateful and a stateless
 * SDK upstream. Prints requests/s, p50/p99, the throughput ratios, and the server CPU per request
 * of each process (from /proc), so the gateway's extra CPU over direct can be compared with the bare
 * proxy's. `--before REV` adds the gateway of another commit (extracted with `git archive`, nothing
 * in the repository changes) as a fourth target: default 2ffd3d9, the tree before issue 13;
 * `--before none` skips it. Gateways run compiled, as `mcpgate serve` does (both trees are built
 * with tsc first); the upstream and the bare proxy, whose per-request code is library code or
 * inline callbacks, run under tsx.
 *
 * The targets run in rounds of a balanced order (each in each position, and after each other, as
 * often), in `--instances` fresh sets of processes: one process of the same code can measure
 * several per cent faster or slower than the next, so one set alone says little about a few per
 * cent. `--before HEAD` measures that spread (the same code in two slots). Loopback only, bounded
 * (~modes × instances × rounds × 4 × roundMs).
 *   npx tsx bench/gateway.ts [--instances 3] [--rounds 4] [--round-ms 3000] [--concurrency 10] [--mode stateful|stateless|both] [--before REV|none]
 */

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync, rmSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { findFreePort } from "../src/gateway/free-port.js";
import { buildTree, extractTree, load, openSession, startGatewayProcess, summarize } from "./lib.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "4" },
    instances: { type: "string", default: "3" },
    "round-ms": { type: "string", default: "3000" },
    concurrency: { type: "string", default: "10" },
    "log-level": { type: "string", default: "info" },
    mode: { type: "string", default: "both" },
    before: { type: "string", default: "2ffd3d9" },
  },
});
const rounds = Number(values.rounds);
const instances = Number(values.instances);
const roundMs = Number(values["round-ms"]);
const concurrency = Number(values.concurrency);
const KEY = "bench-static-key-0123456789abcdef";
const TICK_MS = 10; // Linux USER_HZ = 100: /proc/<pid>/stat counts CPU time in 10 ms ticks.

/** User + system CPU time of a process so far, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}

async function start(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ["--import", "tsx", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...env },
  });
  const [line] = (await once(createInterface({ input: proc.stdout! }), "line")) as [string];
  return { url: (JSON.parse(line) as { url: string }).url, proc };
}

type Target = "direct" | "gateway" | "bare" | "before";

// Both gateways run compiled (dist/cli/main.js), as the `mcpgate` command does.
buildTree();
const beforeRoot = values.before === "none" ? undefined : extractTree(values.before!);
const f = (x: number) => x.toFixed(2);

/**
 * Row orders of a Williams design for `n` treatments: each treatment in each position, and after
 * each other treatment, equally often (n rows for an even n, 2n for an odd one).
 */
function williams(n: number): number[][] {
  const first: number[] = [];
  for (let i = 0, lo = 0, hi = n - 1; i < n; i++) first.push(i % 2 === 0 ? lo++ : hi--);
  const rows = Array.from({ length: n }, (_, r) => first.map((x) => (x + r) % n));
  return n % 2 === 0 ? rows : [...rows, ...rows.map((row) => [...row].reverse())];
}

/** The processes of one instance of the setup: an upstream and the proxies in front of it. */
async function startInstance(mode: "stateful" | "stateless") {
  const upstream = await start([
    new URL("./upstream-process.ts", import.meta.url).pathname,
    ...(mode === "stateless" ? ["--stateless"] : []),
  ]);
  const bare = await start([new URL("./bare-proxy.ts", import.meta.url).pathname, upstream.url], {
    MCP_API_KEY: KEY,
  });
  // A real `mcpgate serve` with its default configuration (one JSON log line per request at info,
  // to /dev/null here), as an operator would run it.
  const gateway = (root?: string) =>
    findFreePort("127.0.0.1").then((port) =>
      startGatewayProcess(upstream.url, {
        key: KEY,
        port,
        logLevel: values["log-level"]!,
        ...(root ? { root } : {}),
      }),
    );
  const proxies: Partial<Record<Target, { url: string; proc: ChildProcess }>> = {
    gateway: await gateway(),
    bare,
    ...(beforeRoot ? { before: await gateway(beforeRoot) } : {}),
  };
  const targets: Target[] = ["direct", ...(Object.keys(proxies) as Target[])];
  const auth = { authorization: `Bearer ${KEY}` };
  const sessions = {} as Record<Target, Awaited<ReturnType<typeof openSession>>>;
  for (const t of targets)
    sessions[t] = await openSession(
      t === "direct" ? upstream.url : proxies[t]!.url,
      t === "direct" ? {} : auth,
    );
  const call = (t: Target) => () => sessions[t].call("add", { a: 1, b: 2 });
  for (const t of targets) await load(call(t), concurrency, 1000);
  return {
    upstream,
    proxies,
    targets,
    call,
    async stop() {
      for (const x of Object.values(sessions)) await x.close();
      for (const p of [...Object.values(proxies).map((x) => x!.proc), upstream.proc]) {
        p.kill("SIGTERM");
        await once(p, "exit");
      }
    },
  };
}

async function run(mode: "stateful" | "stateless") {
  const targets: Target[] = ["direct", "gateway", "bare", ...(beforeRoot ? (["before"] as const) : [])];
  const zero = () => Object.fromEntries(targets.map((t) => [t, 0])) as Record<Target, number>;
  const latencies = Object.fromEntries(targets.map((t) => [t, [] as number[]])) as Record<Target, number[]>;
  const secs = zero();
  // CPU ms spent, per target's rounds: by the upstream, and by the proxy in front of it.
  const upCpu = zero();
  const proxyCpu = zero();
  // …and by this process, the load generator (its parsing of what each target answers).
  const clientCpu = zero();
  // Per round, each target's requests/s: a round's ratios pair runs made within seconds of each other.
  const roundRps: Array<Record<Target, number>> = [];
  // Each instance is a fresh set of processes: the same code measures several per cent apart from
  // one process to the next (seen here: the same gateway at 283 and 312 µs a request in two
  // processes of one run), so a result is an average over processes, not one process's luck.
  for (let i = 0; i < instances; i++) {
    const inst = await startInstance(mode);
    const { upstream, proxies, call } = inst;
    for (let r = 0; r < rounds; r++) {
      const round = zero();
      roundRps.push(round);
      // A balanced order (a Williams design): over a full cycle of rounds each target runs once in
      // each position and right after each other target once, so neither position nor what ran
      // just before (the upstream's heap, the CPU's caches) favours one target.
      const design = williams(targets.length);
      const order = design[r % design.length]!.map((k) => targets[k]!);
      for (const t of order) {
        const proxy = proxies[t]?.proc;
        const u0 = cpuMs(upstream.proc.pid!);
        const p0 = proxy ? cpuMs(proxy.pid!) : 0;
        const c0 = process.cpuUsage();
        const res = await load(call(t), concurrency, roundMs);
        const c = process.cpuUsage(c0);
        clientCpu[t] += (c.user + c.system) / 1000;
        upCpu[t] += cpuMs(upstream.proc.pid!) - u0;
        if (proxy) proxyCpu[t] += cpuMs(proxy.pid!) - p0;
        latencies[t].push(...res.latencies);
        secs[t] += res.seconds;
        round[t] = res.latencies.length / res.seconds;
      }
    }
    await inst.stop();
  }
  const s = Object.fromEntries(targets.map((t) => [t, summarize(latencies[t], secs[t])])) as Record<
    Target,
    ReturnType<typeof summarize>
  >;
  const perReqUs = (cpu: number, t: Target) => (cpu * 1000) / s[t].n;
  const upDirect = perReqUs(upCpu.direct, "direct");
  const extra = (t: Target) => perReqUs(proxyCpu[t], t) + perReqUs(upCpu[t], t) - upDirect;
  console.log(
    `\n${mode} SDK upstream — tools/call, concurrency ${concurrency}, ${instances} instances × ${rounds} balanced rounds of ${roundMs} ms per target; gateway log level ${values["log-level"]}` +
      (beforeRoot ? `; "before" = the gateway at ${values.before}` : ""),
  );
  for (const t of targets)
    console.log(
      `${t.padEnd(8)} ${f(s[t].rps).padStart(8)} req/s  p50 ${f(s[t].p50)} ms  p99 ${f(s[t].p99)} ms  (n=${s[t].n})` +
        `  CPU/req: upstream ${f(perReqUs(upCpu[t], t))} µs${t === "direct" ? "" : `, proxy ${f(perReqUs(proxyCpu[t], t))} µs`}, client ${f(perReqUs(clientCpu[t], t))} µs`,
    );
  const ratios = targets
    .filter((t) => t !== "direct")
    .map((t) => `${t}/direct ${f(s[t].rps / s.direct.rps)}`);
  console.log(
    `throughput ratios: ${ratios.join("   ")}${mode === "stateful" ? "   (target: gateway ≥ 0.75)" : ""}`,
  );
  // The same ratios round by round (paired runs): median and range.
  const paired = targets
    .filter((t) => t !== "direct")
    .map((t) => {
      const xs = roundRps.map((r) => r[t] / r.direct).sort((a, b) => a - b);
      const median =
        xs.length % 2 ? xs[(xs.length - 1) / 2]! : (xs[xs.length / 2 - 1]! + xs[xs.length / 2]!) / 2;
      return `${t}/direct ${f(median)} (${f(xs[0]!)}–${f(xs.at(-1)!)})`;
    });
  console.log(`paired by round, median (range): ${paired.join("   ")}`);
  const extras = targets.filter((t) => t !== "direct").map((t) => `${t} ${f(extra(t))} µs`);
  console.log(
    `extra server CPU per request over direct: ${extras.join(", ")}; gateway/bare ${f(extra("gateway") / extra("bare"))}   (target ≤ 1.5)`,
  );
}

const modes =
  values.mode === "both" ? (["stateful", "stateless"] as const) : [values.mode as "stateful" | "stateless"];
for (const m of modes) await run(m);
if (beforeRoot) rmSync(beforeRoot, { recursive: true, force: true });
