/**
 * Soak: minutes of mixed load through `mcpgate` (initialize / tools/list / tools/call / DELETE,
 * bad keys, malformed bodies), with bounded concurrency on loopback. The gateway runs in its own
 * process and samples its RSS, heap and event-loop delay (perf_hooks.monitorEventLoopDelay) every
 * few seconds; the upstream (the SDK demo server) runs in a third process, so the load generator's
 * own allocations never count against the gateway.
 *
 * Reports, per minute: requests/s, p50/p99 latency, unexpected statuses, RSS, heap, event-loop p99.
 * Verdicts: memory flat after warm-up (RSS slope over the post-warm-up samples, and last minute vs
 * second minute) and p99 stable (last minute vs first minute).
 *
 *   npx tsx bench/soak.ts                       # 5 minutes, 16 workers
 *   npx tsx bench/soak.ts --duration 60s --concurrency 8 --sample 2s
 *
 * Not part of `npm test`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Pool } from "undici";
import { issueApiKey } from "../src/authn/key-lifecycle.js";
import { startDemoHttpServer } from "../src/cli/demo-server.js";
import { validateConfig } from "../src/config.js";
import { parseDuration } from "../src/core/duration.js";
import { startGateway } from "../src/gateway/assembly/assemble.js";
import { createLogger } from "../src/observe/logger.js";
import { openKeyStore } from "../src/stores/open-key-store.js";

const { values } = parseArgs({
  options: {
    role: { type: "string", default: "main" },
    duration: { type: "string", default: "5m" },
    concurrency: { type: "string", default: "16" },
    sample: { type: "string", default: "5s" },
    warmup: { type: "string", default: "60s" },
    upstream: { type: "string" },
    store: { type: "string" },
  },
});

interface Sample {
  t: number;
  rss: number;
  heapUsed: number;
  external: number;
  eldP50: number;
  eldP99: number;
  eldMax: number;
  inFlight: number;
}

const MB = 1024 * 1024;

// ─── role: upstream ──────────────────────────────────────────────────────────────────────────────
async function runUpstream(): Promise<void> {
  const up = await startDemoHttpServer(0);
  process.stdout.write(`${JSON.stringify({ url: up.url })}\n`);
  process.on("SIGTERM", () => void up.close().then(() => process.exit(0)));
}

// ─── role: gateway ───────────────────────────────────────────────────────────────────────────────
async function runGateway(): Promise<void> {
  const env = { ...process.env };
  const config = validateConfig(
    {
      listen: { host: "127.0.0.1", port: 0 },
      upstream: { url: values.upstream! },
      auth: { apiKeys: { store: values.store! } },
      // Bad keys are part of the mix, all from 127.0.0.1: keep the lockout out of reach.
      guard: { failures: 1_000_000_000 },
      logging: { level: "warn" },
    },
    env,
  );
  const gw = await startGateway({
    config,
    env,
    logger: createLogger({ level: "warn", destination: process.stderr }),
  });
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  const started = performance.now();
  process.stdout.write(`${JSON.stringify({ url: gw.url })}\n`);
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    const s: Sample = {
      t: (performance.now() - started) / 1000,
      rss: m.rss / MB,
      heapUsed: m.heapUsed / MB,
      external: m.external / MB,
      eldP50: eld.percentile(50) / 1e6,
      eldP99: eld.percentile(99) / 1e6,
      eldMax: eld.max / 1e6,
      inFlight: gw.server.inFlight(),
    };
    eld.reset();
    process.stdout.write(`${JSON.stringify({ sample: s })}\n`);
  }, parseDuration(values.sample!));
  process.on("SIGTERM", () => {
    clearInterval(timer);
    void gw.close().then(() => process.exit(0));
  });
}

// ─── role: main (orchestrator + load generator) ──────────────────────────────────────────────────
function spawnRole(role: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", fileURLToPath(import.meta.url), "--role", role, ...args],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } },
  );
  const lines = createInterface({ input: child.stdout! });
  const first = new Promise<{ url: string }>((resolve, reject) => {
    lines.once("line", (l) => resolve(JSON.parse(l)));
    child.once("exit", (code) => reject(new Error(`${role} exited with ${code}`)));
  });
  return { child, lines, first };
}

function quantile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : Number.NaN;
}

function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  const num = points.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const den = points.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

async function runMain(): Promise<void> {
  const durationMs = parseDuration(values.duration!);
  const warmupMs = parseDuration(values.warmup!);
  const concurrency = Number(values.concurrency);
  const dir = mkdtempSync(join(tmpdir(), "mcpgate-soak-"));
  const store = `sqlite:${join(dir, "keys.db")}`;
  const keyStore = await openKeyStore(store);
  const { key: storedKey } = await issueApiKey(keyStore, { name: "soak" });
  await keyStore.close();
  const staticKey = `soak-${randomBytes(24).toString("hex")}`;

  const children: ChildProcess[] = [];
  const stop = () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  };
  process.on("exit", stop);
  const up = spawnRole("upstream", []);
  children.push(up.child);
  const { url: upstreamUrl } = await up.first;
  const gwProc = spawnRole(
    "gateway",
    ["--upstream", upstreamUrl, "--store", store, "--sample", values.sample!],
    {
      MCP_API_KEY: staticKey,
    },
  );
  children.push(gwProc.child);
  const { url } = await gwProc.first;
  const samples: Sample[] = [];
  gwProc.lines.on("line", (l) => {
    const v = JSON.parse(l);
    if (v.sample) {
      samples.push(v.sample);
      if (process.env.SOAK_VERBOSE) process.stderr.write(`${l}\n`);
    }
  });

  const target = new URL(url);
  const pool = new Pool(target.origin, { connections: concurrency * 2, pipelining: 1 });
  const base = { "content-type": "application/json", accept: "application/json, text/event-stream" };
  const minuteOf = (t: number) => Math.floor(t / 60_000);
  const lat = new Map<number, number[]>();
  const unexpected = new Map<number, number>();
  const counts = new Map<string, number>();
  const started = performance.now();

  async function send(
    body: string | undefined,
    headers: Record<string, string>,
    expect: number[],
    method: "POST" | "DELETE" = "POST",
  ) {
    const t0 = performance.now();
    const res = await pool.request({
      path: target.pathname,
      method,
      headers: { ...base, ...headers },
      ...(body !== undefined ? { body } : {}),
    });
    const text = await res.body.text();
    const ms = performance.now() - t0;
    const minute = minuteOf(t0 - started);
    const bucket = lat.get(minute) ?? [];
    if (bucket.length === 0) lat.set(minute, bucket);
    bucket.push(ms);
    if (!expect.includes(res.statusCode)) {
      unexpected.set(minute, (unexpected.get(minute) ?? 0) + 1);
      if ((unexpected.get(minute) ?? 0) <= 3)
        process.stderr.write(`unexpected ${res.statusCode}: ${text.slice(0, 160)}\n`);
    }
    return res;
  }

  const rpc = (id: number, method: string, params?: unknown) =>
    JSON.stringify({ jsonrpc: "2.0", id, method, ...(params !== undefined ? { params } : {}) });
  const INIT_PARAMS = {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "soak", version: "1" },
  };

  async function conversation(key: string) {
    const auth = { authorization: `Bearer ${key}` };
    const init = await send(rpc(0, "initialize", INIT_PARAMS), auth, [200]);
    const sid = init.headers["mcp-session-id"];
    if (typeof sid !== "string") return;
    const h = { ...auth, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" };
    await send('{"jsonrpc":"2.0","method":"notifications/initialized"}', h, [202]);
    await send(rpc(1, "tools/list"), h, [200]);
    for (let i = 0; i < 3; i++)
      await send(rpc(2 + i, "tools/call", { name: "add", arguments: { a: i, b: 1 } }), h, [200]);
    await send(rpc(5, "tools/call", { name: "echo", arguments: { text: "x".repeat(200) } }), h, [200]);
    await send(rpc(6, "ping"), h, [200]);
    await send(undefined, h, [200], "DELETE");
  }

  const badKeys = [
    `wrong-${randomBytes(24).toString("hex")}`,
    `${storedKey.slice(0, -1)}${storedKey.endsWith("A") ? "B" : "A"}`, // bad checksum
    `mcpg_ZZZZZZZZ_${"a".repeat(38)}`, // well-formed shape, bad checksum
    "",
  ];
  const scenarios: Array<[number, string, () => Promise<void>]> = [
    [35, "conversation(stored key)", () => conversation(storedKey)],
    [35, "conversation(static key)", () => conversation(staticKey)],
    [
      20,
      "bad key",
      async () => {
        const k = badKeys[Math.floor(Math.random() * badKeys.length)]!;
        await send(rpc(0, "initialize", INIT_PARAMS), k ? { authorization: `Bearer ${k}` } : {}, [401]);
      },
    ],
    [
      10,
      "malformed body",
      async () => {
        await send('{"jsonrpc":"2.0","id":1,"method":', { authorization: `Bearer ${staticKey}` }, [400]);
      },
    ],
  ];
  const totalWeight = scenarios.reduce((a, s) => a + s[0], 0);
  const pick = () => {
    let r = Math.random() * totalWeight;
    for (const s of scenarios) {
      r -= s[0];
      if (r < 0) return s;
    }
    return scenarios[0]!;
  };

  process.stderr.write(
    `soak: ${durationMs / 1000}s, ${concurrency} workers, gateway ${url} (pid ${gwProc.child.pid}), sampling every ${values.sample}\n`,
  );
  const end = started + durationMs;
  let errors = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const [, name, fn] = pick();
        counts.set(name, (counts.get(name) ?? 0) + 1);
        try {
          await fn();
        } catch (err) {
          errors++;
          if (errors <= 5) process.stderr.write(`error in ${name}: ${(err as Error).message}\n`);
        }
      }
    }),
  );
  await new Promise((r) => setTimeout(r, 200));
  await pool.close();
  stop();

  // ─── report ───
  const minutes = [...lat.keys()].sort((a, b) => a - b).filter((m) => (m + 1) * 60_000 <= durationMs + 1000);
  const rows = minutes.map((m) => {
    const s = [...lat.get(m)!].sort((a, b) => a - b);
    const ms = samples.filter((x) => x.t >= m * 60 && x.t < (m + 1) * 60);
    const avg = (f: (x: Sample) => number) =>
      ms.length ? ms.reduce((a, x) => a + f(x), 0) / ms.length : Number.NaN;
    return {
      minute: m + 1,
      requests: s.length,
      rps: Math.round(s.length / 60),
      p50: quantile(s, 0.5),
      p99: quantile(s, 0.99),
      unexpected: unexpected.get(m) ?? 0,
      rssMB: avg((x) => x.rss),
      heapMB: avg((x) => x.heapUsed),
      eldP99: Math.max(...ms.map((x) => x.eldP99)),
    };
  });
  const f1 = (n: number) => n.toFixed(1);
  console.log(
    "\nminute  requests  req/s   p50 ms  p99 ms  unexpected  RSS MB  heap MB  loop-delay p99 ms (max of samples)",
  );
  for (const r of rows) {
    console.log(
      `${String(r.minute).padStart(6)}  ${String(r.requests).padStart(8)}  ${String(r.rps).padStart(5)}  ${f1(r.p50).padStart(7)}  ${f1(r.p99).padStart(6)}  ${String(r.unexpected).padStart(10)}  ${f1(r.rssMB).padStart(6)}  ${f1(r.heapMB).padStart(7)}  ${f1(r.eldP99).padStart(8)}`,
    );
  }
  const after = samples.filter((s) => s.t * 1000 >= warmupMs);
  const rssSlope = slope(after.map((s) => [s.t / 60, s.rss]));
  const heapSlope = slope(after.map((s) => [s.t / 60, s.heapUsed]));
  const first = rows[0];
  const second = rows[1] ?? rows[0];
  const last = rows.at(-1);
  console.log(
    `machine load average at the end (1/5/15 min): ${loadavg()
      .map((x) => x.toFixed(1))
      .join(" / ")}`,
  );
  console.log(`scenarios: ${[...counts].map(([k, v]) => `${k} ${v}`).join(", ")}; client errors ${errors}`);
  if (first && second && last) {
    const p99Ratio = last.p99 / first.p99;
    const rssRatio = last.rssMB / second.rssMB;
    console.log(
      `memory after warm-up (${warmupMs / 1000}s): RSS slope ${f1(rssSlope)} MB/min, heap slope ${f1(heapSlope)} MB/min; ` +
        `RSS last/second minute ${rssRatio.toFixed(3)} (${f1(second.rssMB)} → ${f1(last.rssMB)} MB)`,
    );
    console.log(
      `p99 latency last/first minute: ${p99Ratio.toFixed(3)} (${f1(first.p99)} → ${f1(last.p99)} ms); ` +
        `last/second minute: ${(last.p99 / second.p99).toFixed(3)} (${f1(second.p99)} → ${f1(last.p99)} ms)`,
    );
    const flat = rssSlope < 2 && rssRatio < 1.1;
    const stable = p99Ratio < 1.5;
    const clean = rows.every((r) => r.unexpected === 0) && errors === 0;
    console.log(
      `verdict: memory ${flat ? "FLAT" : "GROWING"}, p99 ${stable ? "STABLE" : "DRIFTING"}, ${clean ? "no unexpected statuses" : "UNEXPECTED STATUSES/ERRORS"}`,
    );
    process.exitCode = flat && stable && clean ? 0 : 1;
  }
  rmSync(dir, { recursive: true, force: true });
}

if (values.role === "upstream") await runUpstream();
else if (values.role === "gateway") await runGateway();
else await runMain();
