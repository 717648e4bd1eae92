/**
 * Stored API keys: verifications/s with a warm cache vs a cold cache (SQLite and PostgreSQL), and
 * lookup time by id with 1k, 100k and 1M keys in the store (DESIGN.md §5: the cost must stay flat,
 * ratio 1M/1k ≤ 1.5). Baselines are measured in the same run. Loopback only; bounded (~1–2 min).
 *   npx tsx bench/keys.ts [--round-ms 400] [--rounds 5] [--concurrency 16] [--max 1000000] [--no-pg]
 * PostgreSQL from MCPGATE_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test), in its own
 * schema, dropped at the end.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import pg from "pg";
import { issueApiKey } from "../src/authn/key-lifecycle.js";
import { createApiKeyVerifier } from "../src/authn/stored-key.js";
import type { KeyStore } from "../src/stores/key-store.js";
import { createPostgresKeyStore } from "../src/stores/postgres.js";
import { createSqliteKeyStore } from "../src/stores/sqlite.js";

const { values } = parseArgs({
  options: {
    "round-ms": { type: "string", default: "400" },
    rounds: { type: "string", default: "5" },
    concurrency: { type: "string", default: "16" },
    max: { type: "string", default: "1000000" },
    "no-pg": { type: "boolean", default: false },
  },
});
const roundMs = Number(values["round-ms"]);
const rounds = Number(values.rounds);
const concurrency = Number(values.concurrency);
const SIZES = [1_000, 100_000, 1_000_000].filter((n) => n <= Number(values.max));
const REAL_KEYS = 100;
const PG_URL = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";

interface Rate {
  /** Operations per second (wall clock). */
  perSec: number;
  /** This process's CPU time per operation, µs (user + system): robust to load from other processes. */
  cpuUs: number;
}

/** Run `fn` with `workers` loops for `ms`: one round. */
async function round(fn: (i: number) => Promise<unknown>, workers: number, ms = roundMs): Promise<Rate> {
  let ops = 0;
  const end = performance.now() + ms;
  const start = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < end) await fn(ops++);
    }),
  );
  const used = process.cpuUsage(cpu);
  return { perSec: ops / ((performance.now() - start) / 1000), cpuUs: (used.user + used.system) / ops };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median ops/s and CPU µs/op over `rounds` rounds. */
async function rate(fn: (i: number) => Promise<unknown>, workers: number): Promise<Rate> {
  const rs: Rate[] = [];
  for (let r = 0; r < rounds; r++) rs.push(await round(fn, workers));
  return { perSec: median(rs.map((r) => r.perSec)), cpuUs: median(rs.map((r) => r.cpuUs)) };
}

const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(2));
const fillerId = (i: number) => `f${i.toString(16).padStart(7, "0")}`;

interface Backend {
  name: string;
  store: KeyStore;
  /** Add filler rows with ids fillerId(from..to-1) (server-side generation: fast). */
  fill(from: number, to: number): Promise<void>;
  /** Concurrency for lookups: SQLite is synchronous (1), PostgreSQL uses its pool. */
  workers: number;
  dispose(): Promise<void>;
}

async function sqliteBackend(): Promise<Backend> {
  const dir = mkdtempSync(join(tmpdir(), "mcpgate-bench-keys-"));
  const path = join(dir, "keys.db");
  const store = createSqliteKeyStore({ path });
  await store.init();
  const raw = new Database(path);
  raw.pragma("journal_mode = WAL");
  const insert = raw.prepare(
    `WITH RECURSIVE seq(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
     INSERT OR IGNORE INTO api_keys (id, hash, name, scopes, created_at, probe)
     SELECT printf('f%07x', i), lower(hex(randomblob(32))), 'filler', '[]', 0, 0 FROM seq`,
  );
  return {
    name: "sqlite",
    store,
    workers: 1,
    async fill(from, to) {
      if (to > from) insert.run(from, to - 1);
      raw.pragma("wal_checkpoint(TRUNCATE)");
    },
    async dispose() {
      raw.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgresBackend(): Promise<Backend> {
  const schema = `mcpgate_bench_${randomBytes(4).toString("hex")}`;
  const store = createPostgresKeyStore({ connectionString: PG_URL, schema, max: concurrency });
  await store.init();
  const admin = new pg.Pool({ connectionString: PG_URL, max: 1 });
  return {
    name: "postgres",
    store,
    workers: concurrency,
    async fill(from, to) {
      if (to <= from) return;
      await admin.query(
        `INSERT INTO "${schema}".api_keys (id, hash, name, scopes, created_at, probe)
         SELECT 'f' || lpad(to_hex(i), 7, '0'), md5(i::text) || md5((i + 1)::text), 'filler', '[]', 0, false
           FROM generate_series($1::int, $2::int) AS i ON CONFLICT DO NOTHING`,
        [from, to - 1],
      );
      await admin.query(`VACUUM ANALYZE "${schema}".api_keys`);
    },
    async dispose() {
      await store.close();
      await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
      await admin.end();
    },
  };
}

async function seed(b: Backend, size: number): Promise<{ keys: string[]; fillMs: number }> {
  const keys: string[] = [];
  for (let i = 0; i < REAL_KEYS; i++) keys.push((await issueApiKey(b.store, { name: `bench-${i}` })).key);
  const t = performance.now();
  await b.fill(0, size - REAL_KEYS);
  return { keys, fillMs: performance.now() - t };
}

function verifyWith(v: ReturnType<typeof createApiKeyVerifier>, keys: string[]) {
  return async (i: number) => {
    const r = await v.verify(keys[i % keys.length]!);
    if (!r.ok) throw new Error(`bench key refused: ${r.reason}`);
  };
}

async function run(make: () => Promise<Backend>): Promise<void> {
  const started = performance.now();
  const stores: Array<{
    size: number;
    b: Backend;
    keys: string[];
    cold: ReturnType<typeof createApiKeyVerifier>;
  }> = [];
  try {
    for (const size of SIZES) {
      const b = await make();
      const { keys, fillMs } = await seed(b, size);
      const cold = createApiKeyVerifier({ store: b.store, cacheTtlMs: 0, touchIntervalMs: 60_000 });
      stores.push({ size, b, keys, cold });
      console.log(
        `  [${b.name}: ${size.toLocaleString("en-US")} keys stored in ${(fillMs / 1000).toFixed(1)} s]`,
      );
    }
    const first = stores[0]!;
    const name = first.b.name;

    // Verification throughput: warm (default 1 s cache) vs cold (cache off: one store lookup each).
    const warm = createApiKeyVerifier({ store: first.b.store, touchIntervalMs: 60_000 });
    await rate(verifyWith(warm, first.keys), concurrency); // warm-up (JIT, connections)
    const warmRate = await rate(verifyWith(warm, first.keys), concurrency);
    const coldRate = await rate(verifyWith(first.cold, first.keys), concurrency);
    await warm.close();
    console.log(
      `${name}: verifications/s (concurrency ${concurrency}, ${first.size.toLocaleString("en-US")} keys)`,
    );
    console.log(
      `  warm cache  ${fmt(warmRate.perSec).padStart(10)} /s  (${warmRate.cpuUs.toFixed(1)} µs CPU each)`,
    );
    console.log(
      `  cold cache  ${fmt(coldRate.perSec).padStart(10)} /s  (${coldRate.cpuUs.toFixed(1)} µs CPU each)   warm/cold = ${(warmRate.perSec / coldRate.perSec).toFixed(1)}×`,
    );

    // Lookup by id in stores of each size. Rounds alternate between sizes so that load from other
    // processes spreads evenly; random ids over all rows, so a big store cannot hide in a few hot pages.
    const samples = new Map<number, { lookup: Rate[]; verify: Rate[] }>(
      SIZES.map((n) => [n, { lookup: [], verify: [] }]),
    );
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < stores.length; k++) {
        const s = stores[(k + r) % stores.length]!;
        const n = s.size - REAL_KEYS;
        let x = 12345 + r;
        const lookup = await round(async () => {
          x = (x * 1103515245 + 12345) & 0x7fffffff;
          if (!(await s.b.store.get(fillerId(x % n)))) throw new Error("filler id not found");
        }, s.b.workers);
        const verify = await round(verifyWith(s.cold, s.keys), s.b.workers);
        samples.get(s.size)!.lookup.push(lookup);
        samples.get(s.size)!.verify.push(verify);
      }
    }
    // SQLite runs in this process: its CPU time per lookup is the load-independent cost. PostgreSQL
    // works in another process: wall-clock latency per operation (at its pool's concurrency).
    const cost = (rs: Rate[], workers: number) =>
      name === "sqlite" ? median(rs.map((x) => x.cpuUs)) : median(rs.map((x) => (1e6 / x.perSec) * workers));
    const unit = name === "sqlite" ? "µs CPU" : `µs wall @${stores[0]!.b.workers}`;
    console.log(`${name}: lookup by id (${unit}; store.get of a random id, and a cold verify of a real key)`);
    const base = samples.get(SIZES[0]!)!;
    const base0 = { lookup: cost(base.lookup, first.b.workers), verify: cost(base.verify, first.b.workers) };
    for (const size of SIZES) {
      const s = samples.get(size)!;
      const lookup = cost(s.lookup, first.b.workers);
      const verify = cost(s.verify, first.b.workers);
      console.log(
        `  ${size.toLocaleString("en-US").padStart(9)} keys: lookup ${lookup.toFixed(1).padStart(7)} (×${(lookup / base0.lookup).toFixed(2)})` +
          `   cold verify ${verify.toFixed(1).padStart(7)} (×${(verify / base0.verify).toFixed(2)})`,
      );
    }
  } finally {
    for (const s of stores) {
      await s.cold.close();
      await s.b.dispose();
    }
  }
  console.log(`  (${((performance.now() - started) / 1000).toFixed(1)} s)`);
}

console.log(`bench/keys: rounds=${rounds} × ${roundMs} ms, median shown; sizes ${SIZES.join(", ")}`);
const backends: Array<() => Promise<Backend>> = [sqliteBackend];
if (!values["no-pg"]) backends.push(postgresBackend);
for (const make of backends) await run(make);
