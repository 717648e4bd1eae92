import { importJWK, type JWK, SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { createOwnTokenVerifier, type TokenLiveness } from "../../src/authserver/token-verifier.js";
import { createMemorySigningKeyStore } from "../../src/stores/signing-keys.js";

const ISSUER = "https://mcp.example.com";
const RESOURCE = "https://mcp.example.com/mcp";

let privateJwk: JWK;
let publicJwks: JWK[];
let now = 1_900_000_000_000;
const live = { grants: new Set(["g1"]), keys: new Map<string, string[]>([["k1", ["tools:call"]]]) };
const liveness: TokenLiveness = {
  grantAlive: async (g) => live.grants.has(g),
  keyScopes: async (k) => live.keys.get(k),
};

beforeAll(async () => {
  const store = createMemorySigningKeyStore();
  await store.init();
  ({
    active: { privateJwk },
    publicJwks,
  } = await store.current());
});

async function sign(claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const key = await importJWK(privateJwk, "ES256");
  return new SignJWT({
    iss: ISSUER,
    aud: RESOURCE,
    sub: "idp:alice",
    scope: "tools:call",
    gid: "g1",
    ...claims,
  })
    .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid: privateJwk.kid, ...header })
    .setIssuedAt(Math.floor(now / 1000))
    .setExpirationTime(Math.floor(now / 1000) + 3600)
    .sign(key);
}

function verifier() {
  return createOwnTokenVerifier({
    issuer: ISSUER,
    resources: [RESOURCE],
    jwks: () => publicJwks,
    liveness,
    livenessTtlMs: 0,
    now: () => now,
  });
}

describe("the gateway's own access tokens (resource-server side)", () => {
  it("accepts one of its tokens: principal oauth:<issuer>#<subject>", async () => {
    const r = await verifier().verify(await sign({}));
    expect(r.ok && r.identity.principal).toBe(`oauth:${ISSUER}#alice`);
  });

  it("narrowed to one endpoint, refuses a token issued for another endpoint of the same gateway", async () => {
    const other = "https://mcp.example.com/admin/mcp";
    const v = createOwnTokenVerifier({
      issuer: ISSUER,
      resources: [RESOURCE, other],
      jwks: () => publicJwks,
      liveness,
      livenessTtlMs: 0,
      now: () => now,
    });
    const forNotes = await sign({ aud: RESOURCE });
    // The whole gateway accepts it (it is one of its resources) …
    expect((await v.verify(forNotes)).ok).toBe(true);
    // … its own endpoint does, the other endpoint does not, cached or not.
    expect((await v.forResource(RESOURCE).verify(forNotes)).ok).toBe(true);
    expect(await v.forResource(other).verify(forNotes)).toEqual({ ok: false, reason: "wrong_audience" });
    expect(await v.forResource(other).verify(await sign({ aud: RESOURCE, jti: "fresh" }))).toEqual({
      ok: false,
      reason: "wrong_audience",
    });
    expect((await v.forResource(other).verify(await sign({ aud: other }))).ok).toBe(true);
  });

  it("maps an API-key login to the key's principal, with at most the key's current scopes", async () => {
    const r = await verifier().verify(await sign({ sub: "key:k1", scope: "tools:call admin" }));
    expect(r.ok && r.identity.principal).toBe("key:k1");
    expect(r.ok && r.identity.kind).toBe("api_key");
    expect(r.ok && r.identity.scopes).toEqual(["tools:call"]);
  });

  describe("refuses (401 reasons)", () => {
    it("an identity assertion signed with the same key (typ mcpgate-identity+jwt): never replayable as an access token", async () => {
      const r = await verifier().verify(await sign({}, { typ: "mcpgate-identity+jwt" }));
      expect(r.ok).toBe(false);
    });
    it("a token for another audience", async () => {
      expect((await verifier().verify(await sign({ aud: "https://upstream.internal/mcp" }))).ok).toBe(false);
    });
    it("a token of another issuer", async () => {
      expect(await verifier().verify(await sign({ iss: "https://evil.example" }))).toEqual({
        ok: false,
        reason: "wrong_issuer",
      });
    });
    it("an expired token (the exact second)", async () => {
      const token = await sign({});
      now += 3600_000;
      try {
        expect(await verifier().verify(token)).toEqual({ ok: false, reason: "expired" });
      } finally {
        now -= 3600_000;
      }
    });
    it("an unsigned (alg none) token and a tampered one", async () => {
      const token = await sign({});
      const [h, p] = token.split(".");
      const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "at+jwt" })).toString("base64url")}.${p}.`;
      expect((await verifier().verify(none)).ok).toBe(false);
      const forged = Buffer.from(
        JSON.stringify({ ...JSON.parse(Buffer.from(p!, "base64url").toString()), sub: "idp:root" }),
      ).toString("base64url");
      expect(await verifier().verify(`${h}.${forged}.${token.split(".")[2]}`)).toEqual({
        ok: false,
        reason: "bad_signature",
      });
    });
    it("a token whose grant was revoked, or without a grant", async () => {
      expect(await verifier().verify(await sign({ gid: "gone" }))).toEqual({ ok: false, reason: "revoked" });
      expect(await verifier().verify(await sign({ gid: undefined }))).toEqual({
        ok: false,
        reason: "revoked",
      });
    });
    it("a key-login token once the key is revoked, even while the token is cached", async () => {
      const v = verifier();
      const token = await sign({ sub: "key:k1" });
      expect((await v.verify(token)).ok).toBe(true);
      live.keys.delete("k1");
      try {
        expect(await v.verify(token)).toEqual({ ok: false, reason: "revoked" });
      } finally {
        live.keys.set("k1", ["tools:call"]);
      }
    });
    it("an oversized or malformed value without parsing it", async () => {
      expect(await verifier().verify("x".repeat(9000))).toEqual({ ok: false, reason: "malformed" });
      expect((await verifier().verify("a.b.c")).ok).toBe(false);
    });
  });
});
