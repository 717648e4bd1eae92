import { type ChildProcess, execSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "undici";

/** Latency samples (ms) → summary. */
export function summarize(samples: number[], seconds: number) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
  return { n: s.length, rps: s.length / seconds, p50: q(0.5), p99: q(0.99) };
}

/** Run `fn` with `concurrency` workers for `ms` milliseconds; returns latencies. */
export async function load(
  fn: () => Promise<void>,
  concurrency: number,
  ms: number,
): Promise<{ latencies: number[]; seconds: number }> {
  const latencies: number[] = [];
  const end = performance.now() + ms;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await fn();
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { latencies, seconds: (performance.now() - started) / 1000 };
}

/** A 2025-06-18 `initialize` request body, as the benchmarks send it. */
export const INITIALIZE_BODY = JSON.stringify({
  jsonrpc: "2.0",
  id: 0,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "bench", version: "1" } },
});

/** A keep-alive MCP session over raw HTTP (initialize + initialized), for load without SDK client overhead. */
export async function openSession(url: string, headers: Record<string, string> = {}) {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 64, pipelining: 1 });
  const base = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    ...headers,
  };
  const init = await pool.request({
    path: u.pathname,
    method: "POST",
    headers: base,
    body: INITIALIZE_BODY,
  });
  const sid = init.headers["mcp-session-id"] as string | undefined;
  await init.body.text();
  if (init.statusCode !== 200) throw new Error(`initialize failed: ${init.statusCode}`);
  // A stateless upstream mints no session: later requests carry none.
  const h = { ...base, ...(sid ? { "mcp-session-id": sid } : {}), "mcp-protocol-version": "2025-06-18" };
  const n = await pool.request({
    path: u.pathname,
    method: "POST",
    headers: h,
    body: '{"jsonrpc":"2.0","method":"notifications/initialized"}',
  });
  await n.body.text();
  let id = 1;
  return {
    async call(name: string, args: Record<string, unknown>) {
      const r = await pool.request({
        path: u.pathname,
        method: "POST",
        headers: h,
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: id++,
          method: "tools/call",
          params: { name, arguments: args },
        }),
      });
      const text = await r.body.text();
      if (r.statusCode !== 200) throw new Error(`tools/call: ${r.statusCode} ${text.slice(0, 200)}`);
    },
    async close() {
      await pool.close();
    },
  };
}

/**
 * Compile a tree of the project (`tsc -p tsconfig.build.json`, into its `dist/`), as `npm install`
 * does before `mcpgate serve` runs: benchmarks measure the gateway users run, not the TypeScript
 * loader (tsx adds a `__name` call per named closure). `root` defaults to this tree.
 */
export function buildTree(root = new URL("..", import.meta.url).pathname): void {
  const tsc = new URL("../node_modules/typescript/bin/tsc", import.meta.url).pathname;
  const r = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: root, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`build of ${root} failed:\n${r.stdout}${r.stderr}`);
}

/**
 * A real `mcpgate serve` process in front of `upstreamUrl` (static key `key`), ready when /healthz
 * answers, run from the compiled `dist/cli/main.js` of `root` (this tree by default; call
 * {@link buildTree} first) as the `mcpgate` command runs. `nodeArgs` go before the script (e.g.
 * --cpu-prof); `root`: another tree of the project (e.g. an older commit extracted with `git archive`).
 */
export async function startGatewayProcess(
  upstreamUrl: string,
  options: { key: string; port: number; logLevel?: string; nodeArgs?: string[]; root?: string },
): Promise<{ url: string; proc: ChildProcess }> {
  const root = options.root ?? new URL("..", import.meta.url).pathname;
  const proc = spawn(
    process.execPath,
    [
      ...(options.nodeArgs ?? []),
      join(root, "dist/cli/main.js"),
      "serve",
      "--upstream",
      upstreamUrl,
      "--port",
      String(options.port),
      "--log-level",
      options.logLevel ?? "info",
    ],
    { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, MCP_API_KEY: options.key } },
  );
  const url = `http://127.0.0.1:${options.port}/mcp`;
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(new URL("/healthz", url)).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, proc };
}

/**
 * The tree of another commit, for its gateway: extracted with `git archive` into a temporary
 * directory (nothing in the repository changes), with this tree's node_modules, and built. Remove
 * it with `rmSync(dir, { recursive: true })` when done.
 */
export function extractTree(rev: string): string {
  const dir = mkdtempSync(join(tmpdir(), "mcpgate-bench-before-"));
  const root = new URL("..", import.meta.url).pathname;
  execSync(`git archive ${rev} | tar -x -C ${dir}`, { cwd: root, shell: "/bin/bash" });
  symlinkSync(join(root, "node_modules"), join(dir, "node_modules"));
  buildTree(dir);
  return dir;
}
