/**
 * Session check cost and binding memory (issue 5, "Measure").
 *
 *   npx tsx bench/sessions.ts            (needs Redis at MCPGATE_TEST_REDIS_URL or 127.0.0.1:6379)
 *
 * 1. Per-request cost of the gate's session check: `gate.admit()` of one `tools/call` with
 *    Mcp-Session-Id, with the in-memory store and with the Redis store, against the same gate
 *    admitting the same request without a session id (no state consulted) in the same run.
 * 2. Heap per live binding: 100 000 bindings in the memory store (target ≤ 300 bytes each).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Redis } from "ioredis";
import { createStaticKeyVerifier } from "../src/authn/static-key.js";
import type { StateStore } from "../src/core/contracts.js";
import { createGate, type Gate } from "../src/gate/gate.js";
import { createMemoryStateStore } from "../src/stores/memory-state.js";
import { createRedisStateStore } from "../src/stores/redis-state.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const KEY = "bench-static-key-0123456789abcdef0123456789";
const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const PUBLIC_URL = "http://127.0.0.1:8080/mcp";
const body = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "tools/call",
  params: { name: "echo", arguments: { message: "hi" } },
});

function headers(sessionId?: string): Record<string, string> {
  return {
    authorization: `Bearer ${KEY}`,
    "content-type": "application/json",
    "mcp-protocol-version": "2025-06-18",
    ...(sessionId ? { "mcp-session-id": sessionId } : {}),
  };
}

/** Mean µs per admit over `ms` milliseconds with `concurrency` admits in flight. */
async function measure(gate: Gate, sessionId: string | undefined, concurrency: number, ms: number) {
  const h = headers(sessionId);
  // Warm up (JIT, script load on Redis).
  for (let i = 0; i < 200; i++) await gate.admit({ method: "POST", headers: h, bodyText: body });
  let n = 0;
  const started = performance.now();
  const end = started + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const d = await gate.admit({ method: "POST", headers: h, bodyText: body });
        if (!d.ok) throw new Error(`admit refused: ${d.denial.kind}`);
        n++;
      }
    }),
  );
  const elapsed = performance.now() - started;
  return { perRequestUs: (elapsed * 1000) / n, rps: (n * 1000) / elapsed };
}

async function gateWith(state: StateStore): Promise<{ gate: Gate; sessionId: string }> {
  const gate = createGate({
    verifiers: [createStaticKeyVerifier({ key: KEY })],
    publicUrl: PUBLIC_URL,
    state,
  });
  const sessionId = randomUUID();
  await state.bindSession(sessionId, { principal: "static", display: "static" }, 30 * 60_000);
  return { gate, sessionId };
}

async function sessionCheckCost(): Promise<void> {
  const ms = 700;
  const memory = await gateWith(createMemoryStateStore());
  const prefix = `mcpgate-bench-${randomBytes(4).toString("hex")}:`;
  const redisStore = createRedisStateStore({ url: REDIS_URL, prefix });
  await redisStore.init();
  const redis = await gateWith(redisStore);

  console.log("\n1. session check per request (gate.admit of one tools/call, same process)");
  console.log("   mode                          concurrency   µs/request   req/s      × baseline");
  for (const concurrency of [1, 32]) {
    // Interleaved rounds, best of three per mode: GC and JIT noise hit every mode alike.
    const best = { base: Infinity, mem: Infinity, red: Infinity };
    const rps = { base: 0, mem: 0, red: 0 };
    for (let round = 0; round < 3; round++) {
      for (const [mode, g, sid] of [
        ["base", memory.gate, undefined],
        ["mem", memory.gate, memory.sessionId],
        ["red", redis.gate, redis.sessionId],
      ] as const) {
        const r = await measure(g, sid, concurrency, ms);
        if (r.perRequestUs < best[mode]) {
          best[mode] = r.perRequestUs;
          rps[mode] = r.rps;
        }
      }
    }
    const row = (name: string, mode: keyof typeof best) =>
      console.log(
        `   ${name.padEnd(30)}${String(concurrency).padStart(11)}   ${best[mode].toFixed(1).padStart(10)}   ${Math.round(rps[mode]).toString().padStart(8)}   ${(best[mode] / best.base).toFixed(2).padStart(8)}`,
      );
    row("no session (baseline)", "base");
    row("memory store", "mem");
    row("redis store (1 round trip)", "red");
  }
  await redisStore.close();
  const cleanup = new Redis(REDIS_URL);
  const keys = await cleanup.keys(`${prefix}*`);
  if (keys.length) await cleanup.del(...keys);
  await cleanup.quit();
}

/** A session id as the gateway receives it: a flat one-byte string parsed from a header. */
function flatId(): string {
  return Buffer.from(randomUUID(), "latin1").toString("latin1");
}

async function bindingMemory(): Promise<void> {
  const N = 100_000;
  const PRINCIPALS = 1000;
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const ids = Array.from({ length: N }, () => flatId());
  gc();
  gc();
  const mid = process.memoryUsage().heapUsed;
  const store = createMemoryStateStore({ maxSessions: N });
  for (let i = 0; i < N; i++) {
    const p = i % PRINCIPALS;
    // Fresh strings per bind, as the gate passes them: the store shares one owner per principal.
    await store.bindSession(
      ids[i]!,
      { principal: `key:${p}`.padEnd(12, "x"), display: `mcpg_${p}` },
      30 * 60_000,
    );
  }
  ids.length = 0; // from here on only the store holds the ids
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  if ((await store.sessionCount()) !== N) throw new Error("bindings lost");
  const perId = (mid - before) / N;
  const total = (after - before) / N;
  console.log(
    `\n2. memory of ${N.toLocaleString("en")} live bindings (memory store, ${PRINCIPALS} principals)`,
  );
  console.log(`   heap growth: ${((after - before) / 1024 / 1024).toFixed(1)} MiB`);
  console.log(
    `   per binding: ${Math.round(total)} bytes, of which ≈${Math.round(perId)} are the 36-char session id string (target ≤ 300)`,
  );
}

console.log("mcpgate bench: sessions");
await sessionCheckCost();
await bindingMemory();
