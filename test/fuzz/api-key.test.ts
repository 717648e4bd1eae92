import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  API_KEY_PREFIX,
  displayPrefixOf,
  generateApiKey,
  isKeyId,
  parseApiKey,
} from "../../src/authn/api-key.js";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".split("");
const base62 = (min: number, max: number) =>
  fc.array(fc.constantFrom(...BASE62), { minLength: min, maxLength: max }).map((a) => a.join(""));
/** Strings shaped like keys (prefix, id, separator, secret) with random damage. */
const keyLike = fc
  .tuple(
    fc.constantFrom("mcpg_", "MCPG_", "mcpg", "mcpg__", ""),
    base62(0, 10),
    fc.constantFrom("_", "", "__", "-"),
    base62(0, 140),
    fc.string({ maxLength: 3 }),
  )
  .map((parts) => parts.join(""));

/** A few keys generated once: generation reads the CSPRNG, properties mutate them. */
const KEYS = Array.from({ length: 16 }, () => generateApiKey());
const aKey = fc.constantFrom(...KEYS);

describe("parseApiKey under fuzzing", () => {
  it("never throws, whatever it is given", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.string(), keyLike), (value) => {
        const r = parseApiKey(value);
        expect(typeof r.ok).toBe("boolean");
        if (!r.ok) expect(["malformed", "bad_checksum"]).toContain(r.reason);
      }),
      { numRuns: 1000 },
    );
  });

  it("accepts only mcpg_<8 base62>_<base62 secret> and returns its parts verbatim", () => {
    fc.assert(
      fc.property(fc.oneof(keyLike, aKey), (value) => {
        const r = parseApiKey(value);
        if (!r.ok) return;
        expect(value).toBe(`${API_KEY_PREFIX}${r.id}_${r.secret}`);
        expect(isKeyId(r.id)).toBe(true);
        expect(r.secret).toMatch(/^[0-9A-Za-z]{38,128}$/);
        expect(r.displayPrefix).toBe(displayPrefixOf(r.id));
      }),
      { numRuns: 2000 },
    );
  });

  it("accepts every generated key, with the id and secret it was generated with", () => {
    fc.assert(
      fc.property(base62(8, 8), (id) => {
        const k = generateApiKey(id);
        expect(parseApiKey(k.key)).toEqual({
          ok: true,
          id,
          secret: k.secret,
          displayPrefix: `mcpg_${id}`,
        });
      }),
      { numRuns: 200 },
    );
  });

  it("refuses a key with any one character changed (the checksum catches typos without a lookup)", () => {
    fc.assert(
      fc.property(aKey, fc.nat(), fc.constantFrom(...BASE62), (k, at, c) => {
        const i = API_KEY_PREFIX.length + (at % (k.key.length - API_KEY_PREFIX.length));
        fc.pre(k.key[i] !== c && k.key[i] !== "_");
        const mutated = k.key.slice(0, i) + c + k.key.slice(i + 1);
        expect(parseApiKey(mutated).ok).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });

  it("refuses a truncated, extended or transposed key", () => {
    fc.assert(
      fc.property(aKey, fc.integer({ min: 1, max: 40 }), base62(1, 4), fc.nat(), (k, cut, tail, at) => {
        expect(parseApiKey(k.key.slice(0, -cut)).ok).toBe(false);
        expect(parseApiKey(k.key + tail).ok).toBe(false);
        const s = k.key.length - 38 + (at % 37); // two neighbours inside the secret
        fc.pre(k.key[s] !== k.key[s + 1]);
        const swapped = k.key.slice(0, s) + k.key[s + 1] + k.key[s] + k.key.slice(s + 2);
        expect(parseApiKey(swapped).ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });
});
