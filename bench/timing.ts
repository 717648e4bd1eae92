/**
 * Timing side channel check: does verifying a wrong key that shares a long prefix with the valid
 * key take longer than verifying one that shares none? (An early-exit compare would leak the key
 * one character at a time.) Measured for the static key verifier (src/authn/static-key.ts) and the
 * stored API key verifier (src/authn/stored-key.ts, same id, secret differing late vs early).
 *
 * Method: candidates are measured in rounds; each round visits every candidate in a fresh random
 * order and times a batch of `--batch` verifications (a batch mean per sample, so the timer's
 * resolution does not matter). Robust statistics over the rounds: median and 20% trimmed mean,
 * plus a bootstrap 95% interval of the median ratio. A deliberately leaky verifier (SHA-256 then
 * an early-exit character loop over the raw key) runs alongside as a positive control: it shows
 * the method can see a difference of that size on this machine.
 *
 *   npx tsx bench/timing.ts                      # 1000 rounds × 200 verifications per candidate
 *   npx tsx bench/timing.ts --rounds 200 --batch 100
 */
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { generateApiKey, parseApiKey } from "../src/authn/api-key.js";
import { issueApiKey } from "../src/authn/key-lifecycle.js";
import { createStaticKeyVerifier } from "../src/authn/static-key.js";
import { createApiKeyVerifier } from "../src/authn/stored-key.js";
import type { CredentialVerifier } from "../src/authn/verifier.js";
import { createMemoryKeyStore } from "../src/stores/memory-keys.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "1000" },
    batch: { type: "string", default: "200" },
  },
});
const ROUNDS = Number(values.rounds);
const BATCH = Number(values.batch);

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Replace the character at `i` with a different base62 character. */
function flip(s: string, i: number): string {
  const c = s[i]!;
  const next = BASE62[(BASE62.indexOf(c) + 1) % 62] ?? "A";
  return s.slice(0, i) + next + s.slice(i + 1);
}

/**
 * The key checksum (6 base62 chars over SHA-256 of the key body), recomputed here so the bench can
 * build wrong keys that pass the checksum and reach the digest compare. parseApiKey checks it below.
 */
function withChecksum(id: string, random: string): string {
  const digest = createHash("sha256").update(`mcpgate-key-checksum:mcpg_${id}_${random}`, "utf8").digest();
  let n = digest.readUIntBE(0, 6) % 62 ** 6;
  let sum = "";
  for (let i = 0; i < 6; i++) {
    sum = BASE62[n % 62] + sum;
    n = Math.floor(n / 62);
  }
  return `mcpg_${id}_${random}${sum}`;
}

function leakyVerifier(key: string): CredentialVerifier {
  return {
    kind: "static_key",
    accepts: () => true,
    async verify(token) {
      // Same hashing work as the real verifier, then the classic mistake: an early-exit compare.
      createHash("sha256").update(token, "utf8").digest();
      if (token.length !== key.length) return { ok: false, reason: "invalid" };
      for (let i = 0; i < key.length; i++) if (token[i] !== key[i]) return { ok: false, reason: "invalid" };
      return { ok: false, reason: "invalid" };
    },
  };
}

interface Candidate {
  group: string;
  label: string;
  verifier: CredentialVerifier;
  token: string;
  samples: number[];
}

async function timeBatch(c: Candidate): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < BATCH; i++) {
    const r = await c.verifier.verify(c.token);
    if (r.ok) throw new Error(`${c.group}/${c.label}: a wrong key verified`);
  }
  return Number(process.hrtime.bigint() - t0) / BATCH; // ns per verification
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => {
  const s = sorted(xs);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const trimmedMean = (xs: number[], trim = 0.2) => {
  const s = sorted(xs);
  const k = Math.floor(s.length * trim);
  const kept = s.slice(k, s.length - k);
  return kept.reduce((a, x) => a + x, 0) / kept.length;
};
/** Bootstrap 95% interval of median(a)/median(b), pairing rounds (a[i], b[i] were measured together). */
function bootstrapRatio(a: number[], b: number[], iterations = 2000): [number, number] {
  const ratios: number[] = [];
  for (let it = 0; it < iterations; it++) {
    const ra: number[] = [];
    const rb: number[] = [];
    for (let i = 0; i < a.length; i++) {
      const j = Math.floor(Math.random() * a.length);
      ra.push(a[j]!);
      rb.push(b[j]!);
    }
    ratios.push(median(ra) / median(rb));
  }
  const s = sorted(ratios);
  return [s[Math.floor(0.025 * s.length)]!, s[Math.floor(0.975 * s.length)]!];
}

// ─── candidates ──────────────────────────────────────────────────────────────────────────────────
const STATIC_KEY = `sk_${Array.from({ length: 61 }, (_, i) => BASE62[(i * 7 + 3) % 62]).join("")}`;
const staticVerifier = createStaticKeyVerifier({ key: STATIC_KEY });
const leaky = leakyVerifier(STATIC_KEY);

const store = createMemoryKeyStore();
await store.init();
const issued = await issueApiKey(store, { name: "timing" });
const parsedValid = parseApiKey(issued.key);
if (!parsedValid.ok) throw new Error("bench bug: issued key does not parse");
const valid = parsedValid;
const storedVerifier = createApiKeyVerifier({ store, cacheTtlMs: 1000 });
const random = valid.secret.slice(0, 32);
// Same id; the random part differs only in its last character (31 shared) vs its first (none shared).
// Both carry a valid checksum, so both reach the lookup and the constant-time digest compare.
const storedLate = withChecksum(valid.id, flip(random, 31));
const storedEarly = withChecksum(valid.id, flip(random, 0));
for (const k of [storedLate, storedEarly]) {
  const p = parseApiKey(k);
  if (!p.ok) throw new Error("bench bug: constructed key fails its checksum");
}
const otherId = generateApiKey().id;

const candidates: Candidate[] = [
  {
    group: "static key",
    label: "shares all but the last char",
    verifier: staticVerifier,
    token: flip(STATIC_KEY, STATIC_KEY.length - 1),
    samples: [],
  },
  {
    group: "static key",
    label: "shares no prefix",
    verifier: staticVerifier,
    token: flip(STATIC_KEY, 0),
    samples: [],
  },
  {
    group: "stored key",
    label: "same id, secret differs at its last random char",
    verifier: storedVerifier,
    token: storedLate,
    samples: [],
  },
  {
    group: "stored key",
    label: "same id, secret differs at its first char",
    verifier: storedVerifier,
    token: storedEarly,
    samples: [],
  },
  {
    group: "stored key (info)",
    label: "unknown id (dummy digest compare)",
    verifier: storedVerifier,
    token: withChecksum(otherId, random),
    samples: [],
  },
  {
    group: "leaky control",
    label: "shares all but the last char",
    verifier: leaky,
    token: flip(STATIC_KEY, STATIC_KEY.length - 1),
    samples: [],
  },
  {
    group: "leaky control",
    label: "shares no prefix",
    verifier: leaky,
    token: flip(STATIC_KEY, 0),
    samples: [],
  },
];

// Warm-up (JIT, caches), then interleaved rounds in random order.
for (const c of candidates) for (let i = 0; i < 5; i++) await timeBatch(c);
const started = performance.now();
for (let r = 0; r < ROUNDS; r++) {
  const order = [...candidates].sort(() => Math.random() - 0.5);
  for (const c of order) c.samples.push(await timeBatch(c));
}
const seconds = (performance.now() - started) / 1000;

console.log(
  `timing: ${ROUNDS} rounds × ${BATCH} verifications per candidate, interleaved in random order (${seconds.toFixed(1)} s)`,
);
console.log("ns per verification (batch means): median, 20% trimmed mean\n");
for (const c of candidates) {
  console.log(
    `  ${`${c.group}: ${c.label}`.padEnd(72)} ${median(c.samples).toFixed(0).padStart(7)}  ${trimmedMean(c.samples).toFixed(0).padStart(7)}`,
  );
}
console.log("\nratio late-difference / early-difference (1.000 = no leak):");
const pairs: Array<[string, Candidate, Candidate]> = [
  ["static key", candidates[0]!, candidates[1]!],
  ["stored key", candidates[2]!, candidates[3]!],
  ["leaky control", candidates[5]!, candidates[6]!],
];
let leakFound = false;
let controlSeen = false;
for (const [name, a, b] of pairs) {
  const rMed = median(a.samples) / median(b.samples);
  const rTrim = trimmedMean(a.samples) / trimmedMean(b.samples);
  const [lo, hi] = bootstrapRatio(a.samples, b.samples);
  const separated = lo > 1 || hi < 1;
  console.log(
    `  ${name.padEnd(14)} median ${rMed.toFixed(3)}  trimmed ${rTrim.toFixed(3)}  95% CI of median ratio [${lo.toFixed(3)}, ${hi.toFixed(3)}]${separated ? "  ← differs" : ""}`,
  );
  if (name === "leaky control") controlSeen = lo > 1;
  // A real leak shows as a consistently slower late-difference case; allow 2% for machine noise.
  else if (lo > 1.02) leakFound = true;
}
console.log(
  `\nverdict: ${leakFound ? "TIMING DIFFERENCE in a real verifier" : "no timing difference in the real verifiers"}; ` +
    `control ${controlSeen ? "detected (the method is sensitive enough)" : "NOT detected (inconclusive on this machine)"}`,
);
process.exitCode = leakFound ? 1 : 0;
