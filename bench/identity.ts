/**
 * Identity assertions (issue 15): the cost of one uncached signature, ES256 vs EdDSA, and of a
 * cached one (what the hot path pays), measured in the same run, alternating.
 * The gateway throughput with `identity: assertion` against `identity: none` is part 2 (below).
 *
 * Run: npx tsx bench/identity.ts
 * Targets: gateway rps with assertion ≥ 0.95 × none (signing cached off the hot path).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Identity } from "../src/core/identity.js";
import { findFreePort } from "../src/gateway/free-port.js";
import { createAssertionSigner } from "../src/identity/assertion-signer.js";
import { createMemorySigningKeyStore, type SigningAlg } from "../src/stores/signing-keys.js";
import { load, openSession, summarize } from "./lib.js";

const ROUND_MS = 1_000;
const ROUNDS = 6;
const identity: Identity = {
  principal: "key:Bench123",
  kind: "api_key",
  subject: "Bench123",
  scopes: ["tools:call", "notes:write"],
  tenant: "acme",
};

async function signerFor(alg: SigningAlg, maxEntries: number) {
  const keys = createMemorySigningKeyStore({ alg });
  await keys.init();
  return createAssertionSigner({ keys, issuer: "https://mcp.bench.example", maxEntries });
}

/** Signatures per second for `ms`: `maxEntries: 0` turns the cache off, so each call signs. */
async function rate(sign: (i: number) => Promise<string>, ms: number): Promise<number> {
  let n = 0;
  const end = performance.now() + ms;
  const start = performance.now();
  while (performance.now() < end) {
    // Small concurrent batches, as concurrent requests would ask.
    await Promise.all(Array.from({ length: 8 }, () => sign(n++)));
  }
  return n / ((performance.now() - start) / 1000);
}

async function part1() {
  const es = await signerFor("ES256", 0);
  const ed = await signerFor("EdDSA", 0);
  const cached = await signerFor("ES256", 10_000);
  const uncachedES = (i: number) => es.sign({ identity, audience: "http://u/mcp", sessionId: `s${i}` });
  const uncachedED = (i: number) => ed.sign({ identity, audience: "http://u/mcp", sessionId: `s${i}` });
  const hit = () => cached.sign({ identity, audience: "http://u/mcp", sessionId: "same" });
  for (let i = 0; i < 300; i++) await Promise.all([uncachedES(i), uncachedED(i), hit()]); // warm-up
  const r = { es: [] as number[], ed: [] as number[], hit: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    r.es.push(await rate(uncachedES, ROUND_MS));
    r.ed.push(await rate(uncachedED, ROUND_MS));
    r.hit.push(await rate(hit, ROUND_MS / 2));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const es256 = median(r.es);
  const eddsa = median(r.ed);
  const hits = median(r.hit);
  console.log(`uncached ES256 signature: ${(1e6 / es256).toFixed(1)} µs (${es256.toFixed(0)}/s)`);
  console.log(`uncached EdDSA signature: ${(1e6 / eddsa).toFixed(1)} µs (${eddsa.toFixed(0)}/s)`);
  console.log(`EdDSA / ES256 signatures per second: ${(eddsa / es256).toFixed(2)}×`);
  console.log(
    `cached assertion (the hot path): ${(1e6 / hits).toFixed(2)} µs (${(hits / es256).toFixed(0)}× an ES256 signature)`,
  );
  console.log(
    `rounds ES256/s: ${r.es.map((x) => x.toFixed(0)).join(" ")}; EdDSA/s: ${r.ed.map((x) => x.toFixed(0)).join(" ")}`,
  );
}

/**
 * Part 2: one `mcpgate serve` process with two mounts on the same upstream process — `/none/mcp`
 * (identity: none) and `/asserted/mcp` (identity: assertion) — so the only difference between the
 * two paths is the identity. Alternating rounds, tools/call over keep-alive sessions.
 */
/** utime + stime of a process, in ms (Linux /proc; clock ticks are 100 Hz). */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function part2(rounds = 10, roundMs = 2000, concurrency = 16) {
  const KEY = "bench-static-key-0123456789abcdef";
  const dir = mkdtempSync(join(tmpdir(), "mcpgate-bench-identity-"));
  const upstreamScript = new URL("./upstream-process.ts", import.meta.url).pathname;
  const child = spawn(process.execPath, ["--import", "tsx", upstreamScript], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const [line] = (await once(createInterface({ input: child.stdout! }), "line")) as [string];
  const upstreamUrl = (JSON.parse(line) as { url: string }).url;
  const port = await findFreePort("127.0.0.1");
  const config = join(dir, "gw.json");
  writeFileSync(
    config,
    JSON.stringify({
      listen: { host: "127.0.0.1", port },
      identity: { keyStore: `sqlite:${join(dir, "keys.db")}` },
      upstreams: [
        { name: "none", path: "/none/mcp", url: upstreamUrl },
        { name: "asserted", path: "/asserted/mcp", url: upstreamUrl, identity: { mode: "assertion" } },
      ],
    }),
  );
  const main = new URL("../src/cli/main.ts", import.meta.url).pathname;
  const gw = spawn(process.execPath, ["--import", "tsx", main, "serve", "--config", config], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, MCP_API_KEY: KEY },
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    const healthy = () =>
      fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
    for (let i = 0; i < 300 && !(await healthy()); i++) await new Promise((r) => setTimeout(r, 100));
    const auth = { authorization: `Bearer ${KEY}` };
    const sessions = {
      none: await openSession(`${base}/none/mcp`, auth),
      asserted: await openSession(`${base}/asserted/mcp`, auth),
    };
    // A failed call (the loaded machine's 503/504) is counted, not fatal; it is not a served request.
    const failed = { none: 0, asserted: 0 };
    const call = (which: keyof typeof sessions) => () =>
      sessions[which].call("add", { a: 1, b: 2 }).catch(() => {
        failed[which]++;
      });
    await load(call("none"), concurrency, 1000);
    await load(call("asserted"), concurrency, 1000);
    const rps = { none: [] as number[], asserted: [] as number[] };
    // The gateway's own CPU per request (/proc/<pid>/stat utime+stime): on a shared, loaded machine
    // wall-clock rates mostly measure waiting for a core; CPU per request measures the work done.
    const cpu = { none: { ms: 0, n: 0 }, asserted: { ms: 0, n: 0 } };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? (["none", "asserted"] as const) : (["asserted", "none"] as const);
      for (const which of order) {
        const before = cpuMsOf(gw.pid!);
        const { latencies, seconds } = await load(call(which), concurrency, roundMs);
        cpu[which].ms += cpuMsOf(gw.pid!) - before;
        cpu[which].n += latencies.length;
        rps[which].push(summarize(latencies, seconds).rps);
      }
    }
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const ratios = rps.asserted.map((a, i) => a / rps.none[i]!);
    const median = [...ratios].sort((a, b) => a - b)[Math.floor(ratios.length / 2)]!;
    console.log(`identity none:      ${rps.none.map((x) => x.toFixed(0)).join(" ")} req/s`);
    console.log(`identity assertion: ${rps.asserted.map((x) => x.toFixed(0)).join(" ")} req/s`);
    console.log(
      `assertion / none: ${(sum(rps.asserted) / sum(rps.none)).toFixed(3)} overall, median of rounds ${median.toFixed(3)} (per round ${ratios.map((x) => x.toFixed(2)).join(" ")}; target ≥ 0.95)`,
    );
    console.log(`failed calls: none ${failed.none}, assertion ${failed.asserted}`);
    const perReq = (c: { ms: number; n: number }) => (1000 * c.ms) / Math.max(1, c.n);
    console.log(
      `gateway CPU per request: none ${perReq(cpu.none).toFixed(0)} µs, assertion ${perReq(cpu.asserted).toFixed(0)} µs (none / assertion = ${(perReq(cpu.none) / perReq(cpu.asserted)).toFixed(3)})`,
    );
  } finally {
    gw.kill("SIGTERM");
    child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(
  `cores ${availableParallelism()}, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`,
);
await part1();
if (!process.argv.includes("--signatures-only")) await part2();
process.exit(0);
