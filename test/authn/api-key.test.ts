import { createHash, createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  displayPrefixOf,
  generateApiKey,
  generateKeyId,
  hashSecret,
  isKeyId,
  looksLikeApiKey,
  parseApiKey,
} from "../../src/authn/api-key.js";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Replace the character at `i` with a different base62 character. */
function mutate(key: string, i: number): string {
  const c = key[i]!;
  const next = BASE62[(BASE62.indexOf(c) + 1) % 62]!;
  return key.slice(0, i) + next + key.slice(i + 1);
}

describe("generateApiKey", () => {
  it("produces mcpg_<8 base62 id>_<38 base62 secret> and a display prefix of mcpg_<id>", () => {
    const k = generateApiKey();
    expect(k.key).toMatch(/^mcpg_[0-9A-Za-z]{8}_[0-9A-Za-z]{38}$/);
    expect(k.key).toBe(`mcpg_${k.id}_${k.secret}`);
    expect(k.displayPrefix).toBe(`mcpg_${k.id}`);
    expect(displayPrefixOf(k.id)).toBe(k.displayPrefix);
  });

  it("never repeats ids or secrets across many keys", () => {
    const keys = Array.from({ length: 2000 }, () => generateApiKey());
    expect(new Set(keys.map((k) => k.id)).size).toBe(keys.length);
    expect(new Set(keys.map((k) => k.secret)).size).toBe(keys.length);
  });

  it("uses every base62 symbol with roughly equal frequency", () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      for (const c of generateApiKey().secret.slice(0, 32)) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect(counts.size).toBe(62);
    const expected = (2000 * 32) / 62;
    for (const n of counts.values()) {
      expect(n).toBeGreaterThan(expected * 0.8);
      expect(n).toBeLessThan(expected * 1.2);
    }
  });

  it("accepts a given id and refuses an id that is not 8 base62 characters", () => {
    expect(generateApiKey("AbCd1234").id).toBe("AbCd1234");
    expect(() => generateApiKey("short")).toThrow(TypeError);
    expect(() => generateApiKey("AbCd-234")).toThrow(TypeError);
  });

  it("generates ids that isKeyId accepts", () => {
    const id = generateKeyId();
    expect(isKeyId(id)).toBe(true);
    expect(isKeyId("mcpg_abc")).toBe(false);
    expect(isKeyId("AbCd12345")).toBe(false);
  });
});

describe("parseApiKey", () => {
  it("returns the id, secret and display prefix of a generated key", () => {
    const k = generateApiKey();
    expect(parseApiKey(k.key)).toEqual({
      ok: true,
      id: k.id,
      secret: k.secret,
      displayPrefix: k.displayPrefix,
    });
  });

  it("reports bad_checksum for a one-character typo anywhere in the id or secret", () => {
    const k = generateApiKey();
    for (let i = 5; i < k.key.length; i++) {
      if (k.key[i] === "_") continue;
      expect(parseApiKey(mutate(k.key, i))).toEqual({ ok: false, reason: "bad_checksum" });
    }
  });

  it("reports bad_checksum when two adjacent characters are swapped", () => {
    const k = generateApiKey();
    const i = 20;
    if (k.key[i] === k.key[i + 1]) return;
    const swapped = k.key.slice(0, i) + k.key[i + 1] + k.key[i] + k.key.slice(i + 2);
    expect(parseApiKey(swapped)).toEqual({ ok: false, reason: "bad_checksum" });
  });

  it("refuses a truncated key without a store lookup", () => {
    const k = generateApiKey();
    expect(parseApiKey(k.key.slice(0, -1)).ok).toBe(false);
    expect(parseApiKey(k.key.slice(0, -7)).ok).toBe(false);
  });

  it("reports malformed for strings that are not shaped like a key", () => {
    const k = generateApiKey();
    const cases: unknown[] = [
      undefined,
      null,
      42,
      {},
      "",
      "mcpg_",
      k.key.replace("mcpg_", "MCPG_"),
      k.key.replace("mcpg_", "mcpx_"),
      `${k.key} `,
      ` ${k.key}`,
      k.key.replace(`_${k.secret}`, `-${k.secret}`),
      `mcpg_${k.id}_${"a".repeat(31)}`,
      `mcpg_${k.id}_${"a".repeat(200)}`,
      `mcpg_${k.id}x_${k.secret}`,
      `mcpg_${k.id}_${k.secret.slice(0, 10)}+${k.secret.slice(11)}`,
    ];
    for (const c of cases) expect(parseApiKey(c)).toEqual({ ok: false, reason: "malformed" });
  });

  it("recognises the prefix cheaply for verifier selection", () => {
    expect(looksLikeApiKey(generateApiKey().key)).toBe(true);
    expect(looksLikeApiKey("eyJhbGciOi.x.y")).toBe(false);
  });
});

describe("hashSecret", () => {
  it("is the hex SHA-256 of the secret without a pepper", () => {
    const { secret } = generateApiKey();
    expect(hashSecret(secret)).toBe(createHash("sha256").update(secret).digest("hex"));
    expect(hashSecret(secret, "")).toBe(hashSecret(secret));
  });

  it("is HMAC-SHA256 keyed by the pepper when one is given, and differs per pepper", () => {
    const { secret } = generateApiKey();
    expect(hashSecret(secret, "pepper-1")).toBe(
      createHmac("sha256", "pepper-1").update(secret).digest("hex"),
    );
    expect(hashSecret(secret, "pepper-1")).not.toBe(hashSecret(secret, "pepper-2"));
    expect(hashSecret(secret, "pepper-1")).not.toBe(hashSecret(secret));
  });
});
