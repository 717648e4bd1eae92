/**
 * tools/call through the gateway vs the same upstream direct vs a bare pass-through proxy (no MCP
 * awareness, one SHA-256 key check: bench/bare-proxy.ts), same run, alternating rounds, for a
 * stateful and a stateless SDK upstream. Prints requests/s, p50/p99, the throughput ratios, and the
 * server CPU per request of each process (from /proc), so the gateway's extra CPU over direct can be
 * compared with the bare proxy's. Loopback only, bounded (~2 × rounds × 3 × roundMs).
 *   npx tsx bench/gateway.ts [--rounds 4] [--round-ms 3000] [--concurrency 10] [--mode stateful|stateless|both]
 */

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { findFreePort } from "../src/gateway/free-port.js";
import { load, openSession, startGatewayProcess, summarize } from "./lib.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "4" },
    "round-ms": { type: "string", default: "3000" },
    concurrency: { type: "string", default: "10" },
    "log-level": { type: "string", default: "info" },
    mode: { type: "string", default: "both" },
  },
});
const rounds = Number(values.rounds);
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

type Target = "direct" | "gateway" | "bare";
const f = (x: number) => x.toFixed(2);

async function run(mode: "stateful" | "stateless") {
  const upstream = await start([
    new URL("./upstream-process.ts", import.meta.url).pathname,
    ...(mode === "stateless" ? ["--stateless"] : []),
  ]);
  const bare = await start([new URL("./bare-proxy.ts", import.meta.url).pathname, upstream.url], {
    MCP_API_KEY: KEY,
  });
  // A real `mcpgate serve` with its default configuration (one JSON log line per request at info,
  // to /dev/null here), as an operator would run it.
  const gw = await startGatewayProcess(upstream.url, {
    key: KEY,
    port: await findFreePort("127.0.0.1"),
    logLevel: values["log-level"]!,
  });
  const auth = { authorization: `Bearer ${KEY}` };
  const sessions = {
    direct: await openSession(upstream.url),
    gateway: await openSession(gw.url, auth),
    bare: await openSession(bare.url, auth),
  };
  const call = (t: Target) => () => sessions[t].call("add", { a: 1, b: 2 });
  for (const t of ["direct", "gateway", "bare"] as const) await load(call(t), concurrency, 1000);

  const latencies: Record<Target, number[]> = { direct: [], gateway: [], bare: [] };
  const secs: Record<Target, number> = { direct: 0, gateway: 0, bare: 0 };
  // CPU ms spent, per target's rounds: by the upstream, and by the proxy in front of it.
  const upCpu: Record<Target, number> = { direct: 0, gateway: 0, bare: 0 };
  const proxyCpu: Record<Target, number> = { direct: 0, gateway: 0, bare: 0 };
  const orders: Target[][] = [
    ["direct", "gateway", "bare"],
    ["gateway", "bare", "direct"],
    ["bare", "direct", "gateway"],
  ];
  for (let r = 0; r < rounds; r++) {
    for (const t of orders[r % orders.length]!) {
      const proxy = t === "gateway" ? gw.proc : t === "bare" ? bare.proc : undefined;
      const u0 = cpuMs(upstream.proc.pid!);
      const p0 = proxy ? cpuMs(proxy.pid!) : 0;
      const res = await load(call(t), concurrency, roundMs);
      upCpu[t] += cpuMs(upstream.proc.pid!) - u0;
      if (proxy) proxyCpu[t] += cpuMs(proxy.pid!) - p0;
      latencies[t].push(...res.latencies);
      secs[t] += res.seconds;
    }
  }
  const s = {
    direct: summarize(latencies.direct, secs.direct),
    gateway: summarize(latencies.gateway, secs.gateway),
    bare: summarize(latencies.bare, secs.bare),
  };
  const perReqUs = (cpu: number, t: Target) => (cpu * 1000) / s[t].n;
  const upDirect = perReqUs(upCpu.direct, "direct");
  const extra = {
    gateway: perReqUs(proxyCpu.gateway, "gateway") + perReqUs(upCpu.gateway, "gateway") - upDirect,
    bare: perReqUs(proxyCpu.bare, "bare") + perReqUs(upCpu.bare, "bare") - upDirect,
  };
  console.log(
    `\n${mode} SDK upstream — tools/call, concurrency ${concurrency}, ${rounds} rotating rounds of ${roundMs} ms per target; gateway log level ${values["log-level"]}`,
  );
  for (const t of ["direct", "gateway", "bare"] as const)
    console.log(
      `${t.padEnd(8)} ${f(s[t].rps).padStart(8)} req/s  p50 ${f(s[t].p50)} ms  p99 ${f(s[t].p99)} ms  (n=${s[t].n})` +
        `  CPU/req: upstream ${f(perReqUs(upCpu[t], t))} µs${t === "direct" ? "" : `, proxy ${f(perReqUs(proxyCpu[t], t))} µs`}`,
    );
  console.log(
    `throughput ratio gateway/direct: ${f(s.gateway.rps / s.direct.rps)}   bare/direct: ${f(s.bare.rps / s.direct.rps)}` +
      (mode === "stateful" ? "   (target: gateway ≥ 0.75 × direct)" : ""),
  );
  console.log(
    `extra server CPU per request over direct: gateway ${f(extra.gateway)} µs, bare proxy ${f(extra.bare)} µs; ratio ${f(extra.gateway / extra.bare)}   (target ≤ 1.5)`,
  );
  console.log(
    `added p50 latency: gateway ${f(s.gateway.p50 - s.direct.p50)} ms, bare proxy ${f(s.bare.p50 - s.direct.p50)} ms`,
  );
  for (const x of Object.values(sessions)) await x.close();
  for (const p of [gw.proc, bare.proc, upstream.proc]) {
    p.kill("SIGTERM");
    await once(p, "exit");
  }
}

const modes =
  values.mode === "both" ? (["stateful", "stateless"] as const) : [values.mode as "stateful" | "stateless"];
for (const m of modes) await run(m);
