import { describe, expect, it } from "vitest";
import { createTokenCache, tokenHash } from "../../src/authn/token-cache.js";
import { isMcpGateError } from "../../src/core/errors.js";
import type { Identity } from "../../src/core/identity.js";

const T0 = 1_900_000_000_000; // a fixed epoch-ms clock

function identity(sub: string, expiresAt?: number): Identity {
  const id: Identity = { principal: `oauth:https://as#${sub}`, kind: "oauth2", subject: sub, scopes: ["a"] };
  if (expiresAt !== undefined) id.expiresAt = expiresAt;
  return id;
}

describe("the verified-token cache", () => {
  it("serves an entry until the second before exp and drops it at exp exactly", () => {
    let now = T0;
    const cache = createTokenCache({ now: () => now });
    const exp = T0 / 1000 + 60;
    cache.set("tok", identity("u", exp));
    now = exp * 1000 - 1;
    expect(cache.get("tok")?.subject).toBe("u");
    now = exp * 1000;
    expect(cache.get("tok")).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it("honours a maxTtlMs shorter than the token's lifetime", () => {
    let now = T0;
    const cache = createTokenCache({ now: () => now, maxTtlMs: 5_000 });
    cache.set("tok", identity("u", T0 / 1000 + 3600));
    now = T0 + 4_999;
    expect(cache.get("tok")).toBeDefined();
    now = T0 + 5_000;
    expect(cache.get("tok")).toBeUndefined();
  });

  it("never caches a token without exp, or one already expired", () => {
    const cache = createTokenCache({ now: () => T0 });
    cache.set("no-exp", identity("u"));
    cache.set("old", identity("u", T0 / 1000 - 1));
    expect(cache.size).toBe(0);
  });

  it("evicts the least recently used entry when full", () => {
    const cache = createTokenCache({ now: () => T0, maxEntries: 2 });
    const exp = T0 / 1000 + 60;
    cache.set("a", identity("a", exp));
    cache.set("b", identity("b", exp));
    cache.get("a"); // a is now the most recent
    cache.set("c", identity("c", exp));
    expect(cache.get("b")).toBeUndefined();
    expect(cache.get("a")?.subject).toBe("a");
    expect(cache.get("c")?.subject).toBe("c");
  });

  it("returns copies, so a caller cannot alter what later requests see", () => {
    const cache = createTokenCache({ now: () => T0 });
    cache.set("tok", identity("u", T0 / 1000 + 60));
    cache.get("tok")!.scopes.push("admin");
    expect(cache.get("tok")!.scopes).toEqual(["a"]);
  });

  it("keys entries by SHA-256 of the token, not the token", () => {
    expect(tokenHash("abc")).toBe("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    const cache = createTokenCache({ now: () => T0 });
    cache.setByHash(tokenHash("tok"), identity("u", T0 / 1000 + 60));
    expect(cache.get("tok")?.subject).toBe("u");
  });

  it("is off with maxEntries 0 and refuses bad options", () => {
    const off = createTokenCache({ maxEntries: 0 });
    off.set("t", identity("u", Date.now() / 1000 + 60));
    expect(off.get("t")).toBeUndefined();
    expect(off.enabled).toBe(false);
    let err: unknown;
    try {
      createTokenCache({ maxEntries: -1 });
    } catch (e) {
      err = e;
    }
    expect(isMcpGateError(err, "ERR_INVALID_OPTION")).toBe(true);
  });
});
