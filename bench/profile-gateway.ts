/**
 * Profile the gateway under load (issue 13: "profile before optimising"): a real `mcpgate serve`
 * run with --cpu-prof in front of an SDK upstream, loaded with tools/call; prints the top
 * self-time functions and the time by source module, for the loaded seconds only (start-up and
 * module compilation excluded). Not part of `npm run bench`.
 * `--target bare` profiles the bare pass-through proxy (bench/bare-proxy.ts) instead, the baseline
 * the gateway's extra CPU is compared with.
 *   npx tsx bench/profile-gateway.ts [--mode stateful|stateless] [--seconds 6] [--concurrency 10] [--target gateway|bare] [--before REV]
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { findFreePort } from "../src/gateway/free-port.js";
import { buildTree, extractTree, load, openSession, startGatewayProcess } from "./lib.js";

const { values } = parseArgs({
  options: {
    mode: { type: "string", default: "stateful" },
    seconds: { type: "string", default: "6" },
    concurrency: { type: "string", default: "10" },
    target: { type: "string", default: "gateway" },
    before: { type: "string" },
    lines: { type: "boolean", default: false },
  },
});
const KEY = "bench-static-key-0123456789abcdef";
const dir = mkdtempSync(join(tmpdir(), "mcpgate-prof-"));
const up = spawn(
  process.execPath,
  [
    "--import",
    "tsx",
    new URL("./upstream-process.ts", import.meta.url).pathname,
    ...(values.mode === "stateless" ? ["--stateless"] : []),
  ],
  { stdio: ["ignore", "pipe", "inherit"] },
);
const [line] = (await once(createInterface({ input: up.stdout! }), "line")) as [string];
const upstreamUrl = (JSON.parse(line) as { url: string }).url;
const port = await findFreePort("127.0.0.1");
const nodeArgs = ["--cpu-prof", `--cpu-prof-dir=${dir}`];
// `--before REV`: the gateway of another commit (to compare profiles of two trees).
const root = values.before ? extractTree(values.before) : undefined;
if (values.target !== "bare" && !root) buildTree();
const { url, proc: gw } =
  values.target === "bare"
    ? await startBare(upstreamUrl)
    : await startGatewayProcess(upstreamUrl, {
        key: KEY,
        port,
        logLevel: "info",
        nodeArgs,
        ...(root ? { root } : {}),
      });

async function startBare(upstream: string) {
  const proc = spawn(
    process.execPath,
    [...nodeArgs, "--import", "tsx", new URL("./bare-proxy.ts", import.meta.url).pathname, upstream],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, MCP_API_KEY: KEY } },
  );
  const [first] = (await once(createInterface({ input: proc.stdout! }), "line")) as [string];
  return { url: (JSON.parse(first) as { url: string }).url, proc };
}
const s = await openSession(url, { authorization: `Bearer ${KEY}` });
await load(() => s.call("add", { a: 1, b: 2 }), Number(values.concurrency), 2000);
const loadedFrom = Date.now();
const r = await load(
  () => s.call("add", { a: 1, b: 2 }),
  Number(values.concurrency),
  Number(values.seconds) * 1000,
);
const loadedMs = Date.now() - loadedFrom;
await s.close();
gw.kill("SIGTERM");
await once(gw, "exit");
up.kill("SIGTERM");

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
  positionTicks?: Array<{ line: number; ticks: number }>;
}
const file = readdirSync(dir)
  .map((f) => join(dir, f))
  .sort((a, b) => readFileSync(b).length - readFileSync(a).length)[0]!;
const prof = JSON.parse(readFileSync(file, "utf8")) as {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  endTime: number;
};
// Keep the samples of the loaded window: the last `loadedMs` before the shutdown (~100 ms after).
const times: number[] = [];
let t = 0;
for (const d of prof.timeDeltas) {
  t += d;
  times.push(t);
}
const end = times.at(-1)!;
const from = end - (loadedMs + 150) * 1000;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const short = (u: string) =>
  u
    .replace(/^.*node_modules\//, "")
    .replace(/^.*\/(src|dist)\//, "$1/")
    .replace(/^file:\/\//, "");
const self = new Map<string, number>();
const byModule = new Map<string, number>();
const inclusive = new Map<string, number>();
const selfByModule = new Map<string, number>();
let total = 0;
for (let i = 0; i < prof.samples.length; i++) {
  if (times[i]! < from) continue;
  const dt = prof.timeDeltas[i]! / 1000;
  total += dt;
  const n = byId.get(prof.samples[i]!)!;
  const key = `${n.callFrame.functionName || "(anonymous)"}  ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + dt);
  const own = short(n.callFrame.url);
  const ownMod = own.startsWith("src/") || own.startsWith("dist/") ? own : own.split("/")[0] || "(native)";
  selfByModule.set(ownMod, (selfByModule.get(ownMod) ?? 0) + dt);
  const seen = new Set<string>();
  const seenFn = new Set<string>();
  for (let cur: number | undefined = n.id; cur !== undefined; cur = parent.get(cur)) {
    const frame = byId.get(cur)!.callFrame;
    const u = short(frame.url);
    const fn = `${frame.functionName || "(anonymous)"}  ${u}:${frame.lineNumber + 1}`;
    if (
      !seenFn.has(fn) &&
      (u.startsWith("src/") || u.startsWith("dist/") || u.startsWith("pino") || u.startsWith("prom-client"))
    ) {
      inclusive.set(fn, (inclusive.get(fn) ?? 0) + dt);
      seenFn.add(fn);
    }
    const mod = u.startsWith("src/") || u.startsWith("dist/") ? u : u.split("/")[0] || "(native)";
    if (!seen.has(mod)) byModule.set(mod, (byModule.get(mod) ?? 0) + dt);
    seen.add(mod);
  }
}
rmSync(dir, { recursive: true, force: true });
console.log(
  `${values.mode} upstream: ${r.latencies.length} requests in ${loadedMs} ms; profile window ${total.toFixed(0)} ms`,
);
console.log("\nself time (ms), top 25:");
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25))
  console.log(`${v.toFixed(1).padStart(8)}  ${k}`);
console.log("\ninclusive time by module (ms), top 25:");
for (const [k, v] of [...byModule].sort((a, b) => b[1] - a[1]).slice(0, 25))
  console.log(`${v.toFixed(1).padStart(8)}  ${k}`);
console.log("\ninclusive time by function (ms; src/, pino, prom-client), top 40:");
for (const [k, v] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, 40))
  console.log(`${v.toFixed(1).padStart(8)}  ${k}`);
console.log("\nself time by module (ms), top 30:");
for (const [k, v] of [...selfByModule].sort((a, b) => b[1] - a[1]).slice(0, 30))
  console.log(`${v.toFixed(1).padStart(8)}  ${k}`);
// Hot lines of the project's own code (positionTicks: every sample, whole profile).
if (process.argv.includes("--lines")) {
  const byLine = new Map<string, number>();
  for (const n of prof.nodes) {
    const u = n.callFrame.url;
    if (!/\/(src|dist)\//.test(u) || u.includes("node_modules")) continue;
    for (const p of n.positionTicks ?? []) {
      const k = `${u.replace(/^file:\/\//, "")}:${p.line}`;
      byLine.set(k, (byLine.get(k) ?? 0) + p.ticks);
    }
  }
  console.log("\nhot lines (samples), top 40:");
  for (const [k, v] of [...byLine].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
    const [file, line] = [k.slice(0, k.lastIndexOf(":")), Number(k.slice(k.lastIndexOf(":") + 1))];
    const text = readFileSync(file, "utf8").split("\n")[line - 1]?.trim().slice(0, 110);
    console.log(`${String(v).padStart(6)}  ${short(file)}:${line}  ${text}`);
  }
}
