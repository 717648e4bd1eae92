import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import type { Identity } from "../../src/core/identity.js";
import { createAssertionSigner } from "../../src/identity/assertion-signer.js";
import { createUpstreamIdentity } from "../../src/identity/upstream-identity.js";
import { createMemorySigningKeyStore } from "../../src/stores/signing-keys.js";

const ISS = "https://mcp.example.com";
const AUD = "http://127.0.0.1:3001/mcp";
const alice: Identity = {
  principal: "key:Alice123",
  kind: "api_key",
  subject: "Alice123",
  scopes: ["tools:call", "notes:write"],
  tenant: "acme",
  displayPrefix: "mcpg_Alice123",
};
const oauthBob: Identity = {
  principal: "oauth:https://as.example.com#bob",
  kind: "oauth2",
  subject: "bob",
  clientId: "cli-app",
  scopes: ["tools:call"],
  expiresAt: Math.floor(Date.now() / 1000) + 600,
};

async function setup(over: { now?: () => number; alg?: "ES256" | "EdDSA"; ttlMs?: number } = {}) {
  const keys = createMemorySigningKeyStore(over.alg ? { alg: over.alg } : {});
  await keys.init();
  const signer = createAssertionSigner({
    keys,
    issuer: ISS,
    ...(over.now ? { now: over.now } : {}),
    ...(over.ttlMs ? { ttlMs: over.ttlMs } : {}),
  });
  return { keys, signer };
}

async function verify(signer: Awaited<ReturnType<typeof setup>>["signer"], jwt: string, now?: number) {
  return jwtVerify(jwt, createLocalJWKSet(await signer.jwks()), {
    issuer: ISS,
    audience: AUD,
    ...(now ? { currentDate: new Date(now) } : {}),
  });
}

describe("identity assertions (DESIGN.md §9)", () => {
  it("carries the §9 claims and header", async () => {
    const { signer } = await setup();
    const jwt = await signer.sign({ identity: alice, audience: AUD, sessionId: "sess-1" });
    const { payload, protectedHeader } = await verify(signer, jwt);
    expect(protectedHeader).toMatchObject({ alg: "ES256", typ: "mcpgate-identity+jwt" });
    expect(protectedHeader.kid).toBeTypeOf("string");
    expect(payload).toMatchObject({
      iss: ISS,
      aud: AUD,
      sub: "key:Alice123",
      scope: "tools:call notes:write",
      client_id: "Alice123",
      tenant: "acme",
      sid: "sess-1",
      kind: "api_key",
    });
    expect(payload.exp! - payload.iat!).toBe(60);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("omits sid and tenant when there are none, and uses the OAuth client id", async () => {
    const { signer } = await setup({ alg: "EdDSA" });
    const jwt = await signer.sign({ identity: oauthBob, audience: AUD });
    const { payload, protectedHeader } = await verify(signer, jwt);
    expect(protectedHeader.alg).toBe("EdDSA");
    expect(payload.sid).toBeUndefined();
    expect(payload.tenant).toBeUndefined();
    expect(payload).toMatchObject({
      sub: "oauth:https://as.example.com#bob",
      client_id: "cli-app",
      kind: "oauth2",
    });
  });

  it("never outlives the caller's credential", async () => {
    const { signer } = await setup({ ttlMs: 3_600_000 });
    const jwt = await signer.sign({ identity: oauthBob, audience: AUD });
    const { payload } = await verify(signer, jwt);
    expect(payload.exp).toBe(oauthBob.expiresAt);
  });

  it("caches per (principal, session, audience) and signs again shortly before exp", async () => {
    let t = Date.now();
    const { signer } = await setup({ now: () => t });
    const a1 = await signer.sign({ identity: alice, audience: AUD, sessionId: "s1" });
    expect(await signer.sign({ identity: alice, audience: AUD, sessionId: "s1" })).toBe(a1);
    const others = await Promise.all([
      signer.sign({ identity: alice, audience: AUD, sessionId: "s2" }),
      signer.sign({ identity: alice, audience: "http://127.0.0.1:3002/mcp", sessionId: "s1" }),
      signer.sign({
        identity: { ...alice, principal: "key:Other999", subject: "Other999" },
        audience: AUD,
        sessionId: "s1",
      }),
      // Same principal with other scopes (a refreshed token): never the stale assertion.
      signer.sign({ identity: { ...alice, scopes: ["tools:call"] }, audience: AUD, sessionId: "s1" }),
    ]);
    expect(new Set([a1, ...others]).size).toBe(5);
    expect(signer.stats.signed).toBe(5);
    t += 44_000; // 60 s lifetime: reused until 15 s remain
    expect(await signer.sign({ identity: alice, audience: AUD, sessionId: "s1" })).toBe(a1);
    t += 2_000;
    const a2 = await signer.sign({ identity: alice, audience: AUD, sessionId: "s1" });
    expect(a2).not.toBe(a1);
    const { payload } = await verify(signer, a2, t);
    expect(payload.iat).toBe(Math.floor(t / 1000));
  });

  it("signs once for a burst of concurrent requests", async () => {
    const { signer } = await setup();
    const all = await Promise.all(
      Array.from({ length: 50 }, () => signer.sign({ identity: alice, audience: AUD, sessionId: "burst" })),
    );
    expect(new Set(all).size).toBe(1);
    expect(signer.stats.signed).toBe(1);
  });

  it("gives each caller a share of the cache: one caller's many sessions never push out another's", async () => {
    const keys = createMemorySigningKeyStore();
    await keys.init();
    const signer = createAssertionSigner({ keys, issuer: ISS, maxEntries: 200 });
    await signer.sign({ identity: alice, audience: AUD, sessionId: "alice-1" });
    // Bob opens ten times the cache's size in sessions (each signs an assertion of its own).
    for (let i = 0; i < 2000; i++)
      await signer.sign({ identity: oauthBob, audience: AUD, sessionId: `bob-${i}` });
    const signed = signer.stats.signed;
    await signer.sign({ identity: alice, audience: AUD, sessionId: "alice-1" });
    expect(signer.stats.signed).toBe(signed);
    // Bob's own recent sessions are still cached; his oldest went first.
    await signer.sign({ identity: oauthBob, audience: AUD, sessionId: "bob-1999" });
    expect(signer.stats.signed).toBe(signed);
    await signer.sign({ identity: oauthBob, audience: AUD, sessionId: "bob-0" });
    expect(signer.stats.signed).toBe(signed + 1);
  });

  it("follows a rotation made elsewhere within the key refresh interval", async () => {
    let t = Date.now();
    const keys = createMemorySigningKeyStore({ now: () => t });
    await keys.init();
    const signer = createAssertionSigner({ keys, issuer: ISS, now: () => t, keyRefreshMs: 5000 });
    const before = await signer.sign({ identity: alice, audience: AUD });
    const oldKid = decodeProtectedHeader(before).kid;
    const r = await keys.rotate({ overlapMs: 3_600_000 });
    t = r.activatesAt + 5000;
    // A cached assertion stays valid (its key is in the overlap); a new one uses the new key.
    expect(await signer.sign({ identity: alice, audience: AUD })).toBe(before);
    const after = await signer.sign({ identity: alice, audience: AUD, sessionId: "new" });
    expect(decodeProtectedHeader(after).kid).toBe(r.kid);
    // Both verify against the published set: the old key is in its overlap.
    const jwks = await signer.jwks();
    expect(jwks.keys.map((k) => k.kid)).toEqual([r.kid, oldKid]);
    expect(jwks.keys.every((k) => k.d === undefined)).toBe(true);
    await verify(signer, before, t);
    await verify(signer, after, t);
  });

  it("keeps signing with the last key set read when a refresh fails, for ten minutes, and fails with none", async () => {
    let t = Date.now();
    const keys = createMemorySigningKeyStore({ now: () => t });
    await keys.init();
    const signer = createAssertionSigner({ keys, issuer: ISS, now: () => t, keyRefreshMs: 5000 });
    const first = await signer.sign({ identity: alice, audience: AUD });
    await keys.close(); // the store is now unavailable: current() throws
    t += 10_000;
    const later = await signer.sign({ identity: alice, audience: AUD, sessionId: "after-outage" });
    expect(decodeProtectedHeader(later).kid).toBe(decodeProtectedHeader(first).kid);
    await verify(signer, later, t);
    // Not for ever: ten minutes after the last good read, a rotation elsewhere may have retired
    // that key — signing fails closed.
    t += 10 * 60_000;
    await expect(
      signer.sign({ identity: alice, audience: AUD, sessionId: "long-outage" }),
    ).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
    const cold = createAssertionSigner({ keys, issuer: ISS, now: () => t });
    await expect(cold.sign({ identity: alice, audience: AUD })).rejects.toMatchObject({
      code: "ERR_STORE_UNAVAILABLE",
    });
  });

  it("refuses a lifetime over one hour", async () => {
    const keys = createMemorySigningKeyStore();
    expect(() => createAssertionSigner({ keys, issuer: ISS, ttlMs: 3_600_001 })).toThrow(/between 1s and 1h/);
  });
});

describe("the per-upstream identity hook", () => {
  it("assertion mode sets Authorization: Bearer, or the bare JWT in identity.header", async () => {
    const { signer } = await setup();
    const hook = createUpstreamIdentity({ upstream: "notes", mode: "assertion", audience: AUD, signer });
    const c = await hook.credential({ identity: alice, sessionId: "s" });
    expect(c.ok && c.headers.authorization).toMatch(/^Bearer eyJ/);
    const custom = createUpstreamIdentity({
      upstream: "notes",
      mode: "assertion",
      audience: AUD,
      signer,
      header: "X-Caller-Identity",
    });
    const c2 = await custom.credential({ identity: alice });
    expect(c2.ok && Object.keys(c2.headers)).toEqual(["x-caller-identity"]);
    expect(c2.ok && c2.headers["x-caller-identity"]).toMatch(/^eyJ[^ ]+$/);
  });

  it("token-exchange mode gives API-key callers an assertion, or refuses them (forKeys)", async () => {
    const { signer } = await setup();
    const exchanger = {
      exchange: async () => ({ ok: false as const, reason: "rejected" as const }),
      stats: { exchanges: 0, cached: 0, failures: 0 },
      clientId: "mcp-gateway",
    };
    const give = createUpstreamIdentity({
      upstream: "n",
      mode: "token-exchange",
      audience: AUD,
      signer,
      exchanger,
    });
    const c = await give.credential({ identity: alice });
    expect(c.ok && c.audit?.mode).toBe("assertion");
    const refuse = createUpstreamIdentity({
      upstream: "n",
      mode: "token-exchange",
      audience: AUD,
      exchanger,
      forKeys: "refuse",
    });
    expect(await refuse.credential({ identity: alice })).toMatchObject({
      ok: false,
      reason: "refused_for_keys",
    });
    // An OAuth caller whose raw token did not reach the hook is refused, never sent without identity.
    expect(await give.credential({ identity: oauthBob })).toMatchObject({ ok: false, reason: "no_token" });
    expect(await give.credential({ identity: oauthBob, token: "t" })).toMatchObject({
      ok: false,
      reason: "exchange_failed",
      detail: "rejected",
      audit: { mode: "token-exchange", delegation: { act: { sub: "mcp-gateway" } } },
    });
  });

  it("gives a stdio child the assertion, the subject and the scopes, valid for the idle TTL", async () => {
    const { signer } = await setup();
    const hook = createUpstreamIdentity({
      upstream: "files",
      mode: "assertion",
      audience: "urn:mcpgate:upstream:files",
      signer,
    });
    const env = await hook.stdioEnv(oauthBob, "sess-9", 30 * 60_000);
    expect(Object.keys(env).sort()).toEqual(["MCPGATE_IDENTITY", "MCPGATE_SCOPES", "MCPGATE_SUBJECT"]);
    expect(env.MCPGATE_SUBJECT).toBe(oauthBob.principal);
    expect(env.MCPGATE_SCOPES).toBe("tools:call");
    const { payload } = await jwtVerify(env.MCPGATE_IDENTITY!, createLocalJWKSet(await signer.jwks()), {
      issuer: ISS,
      audience: "urn:mcpgate:upstream:files",
    });
    expect(payload.exp! - payload.iat!).toBe(1800);
    expect(payload.sid).toBe("sess-9");
    const none = createUpstreamIdentity({ upstream: "x", mode: "none", audience: AUD });
    expect(await none.stdioEnv(alice, "s", 1000)).toEqual({});
    expect(await none.credential({ identity: alice })).toEqual({ ok: true, headers: {} });
  });
});
