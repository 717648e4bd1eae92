import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { generateApiKey, hashSecret } from "../../src/authn/api-key.js";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import { createApiKeyVerifier } from "../../src/authn/stored-key.js";
import type { CredentialVerifier } from "../../src/authn/verifier.js";
import { createMemoryKeyStore } from "../../src/stores/memory-keys.js";

/**
 * A coarse, always-on version of bench/timing.ts (which has the numbers): interleaved rounds of
 * batched verifications, medians, generous bounds. It catches a gross leak (an early-exit compare
 * of the size of the control below), not a nanosecond one.
 */
const ROUNDS = 150;
const BATCH = 100;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
};

async function medianRatio(verifier: CredentialVerifier, late: string, early: string): Promise<number> {
  const samples: Record<"late" | "early", number[]> = { late: [], early: [] };
  const time = async (token: string) => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < BATCH; i++)
      if ((await verifier.verify(token)).ok) throw new Error("wrong key verified");
    return Number(process.hrtime.bigint() - t0);
  };
  for (let i = 0; i < 5; i++) {
    await time(late);
    await time(early);
  }
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which goes first, so drift and caches hit both alike.
    if (r % 2) {
      samples.late.push(await time(late));
      samples.early.push(await time(early));
    } else {
      samples.early.push(await time(early));
      samples.late.push(await time(late));
    }
  }
  return median(samples.late) / median(samples.early);
}

const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === "a" ? "b" : "a") + s.slice(i + 1);

describe("verification time does not depend on where a wrong key differs", () => {
  it("the static key verifier takes as long for a wrong key sharing all but one character as for one sharing none", async () => {
    const key = `sk_${"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".repeat(1)}`;
    const v = createStaticKeyVerifier({ key });
    const ratio = await medianRatio(v, flip(key, key.length - 1), flip(key, 0));
    expect(ratio).toBeGreaterThan(0.85);
    expect(ratio).toBeLessThan(1.15);
  }, 30_000);

  it("the stored key verifier takes as long when the stored digest differs in its last byte as in its first", async () => {
    // Two keys whose stored digests differ from the presented secret's digest at the end vs the
    // start: exactly what an early-exit digest compare would reveal.
    const store = createMemoryKeyStore();
    await store.init();
    const make = async (flipAt: "first" | "last") => {
      const k = generateApiKey();
      const digest = hashSecret(k.secret);
      const at = flipAt === "first" ? 0 : digest.length - 1;
      const wrong = digest.slice(0, at) + (digest[at] === "0" ? "1" : "0") + digest.slice(at + 1);
      await store.create({
        id: k.id,
        name: flipAt,
        hash: wrong,
        scopes: [],
        createdAt: Date.now(),
        probe: false,
      });
      return k.key;
    };
    const v = createApiKeyVerifier({ store });
    const ratio = await medianRatio(v, await make("last"), await make("first"));
    await v.close();
    expect(ratio).toBeGreaterThan(0.85);
    expect(ratio).toBeLessThan(1.15);
  }, 30_000);

  it("the same method sees an early-exit compare (positive control)", async () => {
    const key = "k".repeat(4096);
    const leaky: CredentialVerifier = {
      kind: "static_key",
      accepts: () => true,
      async verify(token) {
        createHash("sha256").update(token).digest();
        for (let i = 0; i < key.length; i++) if (token[i] !== key[i]) break;
        return { ok: false, reason: "invalid" };
      },
    };
    const ratio = await medianRatio(leaky, `${key.slice(0, -1)}x`, `x${key.slice(1)}`);
    expect(ratio).toBeGreaterThan(1.15);
  }, 30_000);
});
