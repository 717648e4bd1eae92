import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAX_TOKEN_LENGTH, parseBearer } from "../../src/authn/bearer.js";

// RFC 6750 §2.1 b64token, written out independently of the parser under test.
const B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/".split("");
const b64token = fc
  .tuple(fc.array(fc.constantFrom(...B64_CHARS), { minLength: 1, maxLength: 80 }), fc.nat(3))
  .map(([chars, pad]) => chars.join("") + "=".repeat(pad));
/** "bearer" in any letter case. */
const scheme = fc
  .array(fc.boolean(), { minLength: 6, maxLength: 6 })
  .map((up) => [..."bearer"].map((c, i) => (up[i] ? c.toUpperCase() : c)).join(""));
/** Strings rich in the characters that break header parsers. */
const nasty = fc.string({
  unit: fc.constantFrom(..."Bb eEaArR=,;:\t\r\n\"'\\/+-._~0aZ\u0000\u00e9\u{1F600}".split("")),
  maxLength: 40,
});
const anyHeader = fc.oneof(
  fc.constant(undefined),
  fc.string({ maxLength: 60 }),
  nasty,
  fc.array(fc.oneof(fc.string({ maxLength: 20 }), nasty), { maxLength: 3 }),
  fc.tuple(scheme, nasty).map(([s, t]) => `${s} ${t}`),
);

describe("parseBearer under fuzzing", () => {
  it("never throws and every accepted token is a b64token taken verbatim from one header", () => {
    fc.assert(
      fc.property(anyHeader, (header) => {
        const r = parseBearer(header);
        if (!r.ok) {
          expect(["missing", "malformed"]).toContain(r.reason);
          return;
        }
        const single = Array.isArray(header) ? header : [header];
        expect(single).toHaveLength(1);
        const value = single[0]!;
        expect(value.slice(0, 7).toLowerCase()).toBe("bearer ");
        expect(value.slice(7)).toBe(r.token);
        expect(r.token).toMatch(/^[A-Za-z0-9\-._~+/]+=*$/);
        expect(r.token.length).toBeLessThanOrEqual(MAX_TOKEN_LENGTH);
      }),
      { numRuns: 1000 },
    );
  });

  it("accepts every b64token after the scheme in any letter case", () => {
    fc.assert(
      fc.property(scheme, b64token, (s, token) => {
        expect(parseBearer(`${s} ${token}`)).toEqual({ ok: true, token });
        expect(parseBearer([`${s} ${token}`])).toEqual({ ok: true, token });
      }),
      { numRuns: 500 },
    );
  });

  it("refuses a valid token with any non-b64token character inserted anywhere", () => {
    const bad = fc.constantFrom(..." \t,;:\"'\\\r\n\u0000\u00e9@!#$%&*()[]{}<>?|^`".split(""));
    fc.assert(
      fc.property(b64token, bad, fc.nat(), (token, c, at) => {
        const i = at % (token.length + 1);
        // "=" padding only at the end: inserting at the very end keeps it malformed because c is not "=".
        const mutated = token.slice(0, i) + c + token.slice(i);
        expect(parseBearer(`Bearer ${mutated}`).ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it("refuses repeated Authorization headers, other schemes and extra whitespace", () => {
    fc.assert(
      fc.property(b64token, b64token, fc.string({ minLength: 1, maxLength: 10 }), (a, b, other) => {
        expect(parseBearer([`Bearer ${a}`, `Bearer ${b}`])).toEqual({ ok: false, reason: "malformed" });
        expect(parseBearer(`Bearer ${a}, Bearer ${b}`).ok).toBe(false);
        expect(parseBearer(`Bearer  ${a}`).ok).toBe(false);
        expect(parseBearer(` Bearer ${a}`).ok).toBe(false);
        expect(parseBearer(`Bearer ${a} `).ok).toBe(false);
        expect(parseBearer(`Bearer\t${a}`).ok).toBe(false);
        if (other.toLowerCase() !== "bearer") expect(parseBearer(`${other} ${a}`).ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it("refuses a token longer than MAX_TOKEN_LENGTH without looking further", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4096 }), (extra) => {
        expect(parseBearer(`Bearer ${"a".repeat(MAX_TOKEN_LENGTH + extra)}`).ok).toBe(false);
      }),
      { numRuns: 50 },
    );
  });
});
