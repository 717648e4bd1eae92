/**
 * stdio upstreams: `mcpgate serve --stdio` (full auth: every request carries a key that is
 * verified) against `mcp-proxy` and `supergateway` (no auth) wrapping the same stdio server
 * (@modelcontextprotocol/server-everything), each as its own process on loopback, same run.
 *
 * 1. tools/call throughput: the three gateways in alternating rounds (cancels drift on a shared
 *    machine), the same sessions and concurrency for each; ratio = mcpgate rps / other rps.
 * 2. Session start latency: initialize (spawn + the server's initialize answer) then DELETE,
 *    sequentially.
 *
 * Run: npx tsx bench/stdio.ts        Target (issue 8): mcpgate/other ≥ 1.0 for both.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { availableParallelism, loadavg } from "node:os";
import { Pool } from "undici";
import { findFreePort } from "../src/gateway/free-port.js";
import { INITIALIZE_BODY, load, openSession, summarize } from "./lib.js";

const SERVER = `${process.execPath} node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio`;
const KEY = `bench-stdio-${Math.random().toString(36).slice(2)}-key`;
const SESSIONS = 4;
const CONCURRENCY = 16;
const ROUND_MS = 1_500;
const ROUNDS = 3;
const STARTS = 15;

interface Target {
  name: string;
  url: string;
  headers: Record<string, string>;
  proc: ChildProcess;
}

async function waitReady(url: string, headers: Record<string, string>, proc: ChildProcess): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${url}: process exited with ${proc.exitCode}`);
    try {
      const s = await openSession(url, headers);
      await s.call("echo", { message: "warm" });
      await s.close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`${url}: not ready in 20 s`);
}

async function startTarget(
  name: string,
  argv: string[],
  env: NodeJS.ProcessEnv,
  port: number,
  headers: Record<string, string>,
): Promise<Target> {
  const proc = spawn(argv[0]!, argv.slice(1), { env, stdio: ["ignore", "ignore", "pipe"], detached: true });
  let err = "";
  proc.stderr?.on("data", (c: Buffer) => {
    err = (err + c.toString()).slice(-2000);
  });
  const url = `http://127.0.0.1:${port}/mcp`;
  try {
    await waitReady(url, headers, proc);
  } catch (e) {
    process.stderr.write(`${name} failed to start: ${(e as Error).message}\n${err}\n`);
    throw e;
  }
  return { name, url, headers, proc };
}

function stop(t: Target): Promise<void> {
  return new Promise((resolve) => {
    if (t.proc.exitCode !== null) return resolve();
    t.proc.once("exit", () => resolve());
    try {
      process.kill(-t.proc.pid!, "SIGTERM");
    } catch {
      resolve();
    }
    setTimeout(() => {
      try {
        process.kill(-t.proc.pid!, "SIGKILL");
      } catch {}
    }, 3_000).unref();
  });
}

/** tools/call echo over `SESSIONS` sessions, `CONCURRENCY` in flight, for `ms`. */
async function throughput(t: Target, ms: number) {
  const sessions = await Promise.all(Array.from({ length: SESSIONS }, () => openSession(t.url, t.headers)));
  let i = 0;
  const r = await load(() => sessions[i++ % SESSIONS]!.call("echo", { message: "hello" }), CONCURRENCY, ms);
  await Promise.all(sessions.map((s) => s.close()));
  return r;
}

/** initialize (spawns the child) → response; then DELETE. Returns initialize latencies. */
async function sessionStarts(t: Target, n: number): Promise<number[]> {
  const u = new URL(t.url);
  const pool = new Pool(u.origin, { connections: 2 });
  const base = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    ...t.headers,
  };
  const out: number[] = [];
  for (let k = 0; k < n; k++) {
    const t0 = performance.now();
    const r = await pool.request({
      path: u.pathname,
      method: "POST",
      headers: base,
      body: INITIALIZE_BODY,
    });
    await r.body.text();
    out.push(performance.now() - t0);
    const sid = r.headers["mcp-session-id"] as string;
    const d = await pool.request({
      path: u.pathname,
      method: "DELETE",
      headers: { ...base, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" },
    });
    await d.body.text();
  }
  await pool.close();
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => n.toFixed(1).padStart(8);

async function main() {
  const p1 = await findFreePort("127.0.0.1");
  const p2r = await findFreePort("127.0.0.1");
  const p3r = await findFreePort("127.0.0.1");
  const baseEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  const mcpgate = await startTarget(
    "mcpgate (auth)",
    [
      process.execPath,
      "--import",
      "tsx",
      "src/cli/main.ts",
      "serve",
      "--stdio",
      SERVER,
      "--port",
      String(p1),
    ],
    { ...baseEnv, MCP_API_KEY: KEY, MCPGATE_LOG_LEVEL: "warn" },
    p1,
    { authorization: `Bearer ${KEY}` },
  );
  const others: Target[] = [];
  try {
    others.push(
      await startTarget(
        "mcp-proxy",
        [
          process.execPath,
          "node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs",
          "--host",
          "127.0.0.1",
          "--port",
          String(p2r),
          "--server",
          "stream",
          "--no-eventStore",
          "--",
          process.execPath,
          "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
          "stdio",
        ],
        baseEnv,
        p2r,
        {},
      ),
    );
    others.push(
      await startTarget(
        "supergateway",
        [
          process.execPath,
          "node_modules/supergateway/dist/index.js",
          "--stdio",
          SERVER,
          "--outputTransport",
          "streamableHttp",
          "--stateful",
          "--port",
          String(p3r),
          "--logLevel",
          "none",
        ],
        baseEnv,
        p3r,
        {},
      ),
    );
    const all = [mcpgate, ...others];
    const rps = new Map<string, number[]>(all.map((t) => [t.name, []]));
    const lat = new Map<string, number[]>(all.map((t) => [t.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of round % 2 === 0 ? all : [...all].reverse()) {
        const r = await throughput(t, ROUND_MS);
        rps.get(t.name)!.push(summarize(r.latencies, r.seconds).rps);
        lat.get(t.name)!.push(...r.latencies);
      }
    }
    const starts = new Map<string, number[]>();
    for (const t of all) starts.set(t.name, await sessionStarts(t, STARTS));

    const cpus = availableParallelism();
    process.stdout.write(
      `\nstdio upstream bench — server-everything, ${SESSIONS} sessions, ${CONCURRENCY} in flight, ${ROUNDS}×${ROUND_MS} ms rounds; ${cpus} CPUs, load ${loadavg()[0]!.toFixed(2)}\n\n`,
    );
    process.stdout.write("tools/call echo          rps(median)   p50 ms   p99 ms   session start p50 ms\n");
    const gateRps = median(rps.get(mcpgate.name)!);
    const gateStart = median(starts.get(mcpgate.name)!);
    for (const t of all) {
      const s = summarize(lat.get(t.name)!, 1);
      process.stdout.write(
        `${t.name.padEnd(22)} ${fmt(median(rps.get(t.name)!))}   ${fmt(s.p50)} ${fmt(s.p99)}   ${fmt(median(starts.get(t.name)!))}\n`,
      );
    }
    process.stdout.write("\nratios (≥ 1.0 = mcpgate at least as fast)\n");
    for (const t of others) {
      const thr = gateRps / median(rps.get(t.name)!);
      const st = median(starts.get(t.name)!) / gateStart;
      // mcp-proxy starts ONE child at launch and shares it between all sessions: its initialize
      // spawns nothing, so its session start is not comparable (and its callers share state).
      const startNote =
        t.name === "mcp-proxy"
          ? "n/a (one shared child, no spawn)"
          : `${st.toFixed(2)} ${st >= 1 ? "PASS" : "FAIL"}`;
      process.stdout.write(
        `  vs ${t.name.padEnd(14)} throughput ${thr.toFixed(2)} ${thr >= 1 ? "PASS" : "FAIL"}   session start ${startNote}\n`,
      );
    }
  } finally {
    await Promise.all([mcpgate, ...others].map(stop));
  }
}

await main();
