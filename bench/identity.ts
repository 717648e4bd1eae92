/**
 * Identity assertions (issue 15): the cost of one uncached signature, ES256 vs EdDSA, and of a
 * cached one (what the hot path pays), measured in the same run, alternating.
 * The gateway throughput with `identity: assertion` against `identity: none` is part 2 (below).
 *
 * Run: npx tsx bench/identity.ts
 * Targets: gateway rps with assertion ≥ 0.95 × none (signing cached off the hot path).
 */
import { availableParallelism, loadavg } from "node:os";
import type { Identity } from "../src/core/identity.js";
import { createAssertionSigner } from "../src/identity/assertion-signer.js";
import { createMemorySigningKeyStore, type SigningAlg } from "../src/stores/signing-keys.js";

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

console.log(
  `cores ${availableParallelism()}, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`,
);
await part1();
