import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { exportSPKI, SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createJwtVerifier, type JwtIssuerOptions, type JwtVerifierOptions } from "../../src/authn/jwt.js";
import { isMcpGateError } from "../../src/core/errors.js";
import { deadUrl, type JwksServer, makeKey, mint, startJwksServer, type TestKey } from "./jwks-fixture.js";
import { startAuthServer } from "./oidc-fixture.js";

const ISSUER = "https://as.test.example";
const AUDIENCE = "https://mcp.test.example/mcp";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowSec = () => Math.floor(Date.now() / 1000);

let rsa: TestKey;
let ec: TestKey;
let ed: TestKey;
let ps: TestKey;
let rogue: TestKey;
let server: JwksServer;
const extraServers: JwksServer[] = [];

function claims(extra: Record<string, unknown> = {}) {
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: "user-42",
    exp: nowSec() + 600,
    iat: nowSec(),
    scope: "tools:call read",
    ...extra,
  };
}

function verifier(issuer: Partial<JwtIssuerOptions> = {}, opts: Partial<JwtVerifierOptions> = {}) {
  return createJwtVerifier({
    publicUrl: AUDIENCE,
    issuers: [{ issuer: ISSUER, jwksUri: server.url, ...issuer }],
    ...opts,
  });
}

beforeAll(async () => {
  [rsa, ec, ed, ps, rogue] = await Promise.all([
    makeKey("RS256", "rsa-1"),
    makeKey("ES256", "ec-1"),
    makeKey("EdDSA", "ed-1"),
    makeKey("PS256", "ps-1"),
    makeKey("RS256", "rsa-1"), // same kid as the real key, different key material
  ]);
  server = await startJwksServer([rsa.jwk, ec.jwk, ed.jwk, ps.jwk]);
});

afterAll(async () => {
  await server.stop();
});

afterEach(async () => {
  server.keys = [rsa.jwk, ec.jwk, ed.jwk, ps.jwk];
  server.failWith = undefined;
  await Promise.all(extraServers.splice(0).map((s) => s.stop()));
});

describe("accepting valid tokens", () => {
  it("verifies an RS256 token and maps its claims to an oauth2 identity", async () => {
    const exp = nowSec() + 600;
    const token = await mint(rsa, claims({ exp, client_id: "svc-1", scp: ["admin"] }));
    const r = await verifier().verify(token);
    expect(r).toEqual({
      ok: true,
      identity: {
        principal: `oauth:${ISSUER}#user-42`,
        kind: "oauth2",
        subject: "user-42",
        scopes: ["tools:call", "read", "admin"],
        displayPrefix: "oauth:user-42@as.test.example",
        clientId: "svc-1",
        expiresAt: exp,
      },
    });
  });

  it.each([
    ["ES256", () => ec],
    ["EdDSA", () => ed],
    ["PS256", () => ps],
  ])("verifies a %s token with the default algorithm list", async (_alg, key) => {
    const r = await verifier().verify(await mint(key(), claims()));
    expect(r.ok).toBe(true);
  });

  it("takes the client id from azp when client_id is absent", async () => {
    const r = await verifier().verify(await mint(rsa, claims({ azp: "web-app" })));
    expect(r.ok && r.identity.clientId).toBe("web-app");
  });

  it("accepts any of several configured audiences", async () => {
    const v = verifier({ audience: ["https://other.example/mcp", "https://mcp2.example/mcp"] });
    expect((await v.verify(await mint(rsa, claims({ aud: "https://mcp2.example/mcp" })))).ok).toBe(true);
    expect(await v.verify(await mint(rsa, claims()))).toEqual({ ok: false, reason: "wrong_audience" });
  });

  it("exposes the configured issuers for the PRM authorization_servers", () => {
    expect(verifier().issuers).toEqual([ISSUER]);
  });
});

describe("the attack set: every forged or unacceptable token is refused with its reason", () => {
  it("refuses an expired token", async () => {
    const token = await mint(rsa, claims({ exp: nowSec() - 10 }));
    expect(await verifier().verify(token)).toEqual({ ok: false, reason: "expired" });
  });

  it("refuses a token whose nbf is in the future", async () => {
    const token = await mint(rsa, claims({ nbf: nowSec() + 300 }));
    expect(await verifier().verify(token)).toEqual({ ok: false, reason: "invalid" });
  });

  it("refuses a token from an unconfigured issuer without fetching anything", async () => {
    const before = server.paths.length;
    const token = await mint(rsa, claims({ iss: "https://evil.example" }));
    expect(await verifier().verify(token)).toEqual({ ok: false, reason: "wrong_issuer" });
    expect(server.paths.length).toBe(before);
  });

  it("refuses a token for another audience", async () => {
    const token = await mint(rsa, claims({ aud: "https://other-server.example/mcp" }));
    expect(await verifier().verify(token)).toEqual({ ok: false, reason: "wrong_audience" });
  });

  it("refuses alg none", async () => {
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const token = `${b64({ alg: "none", typ: "JWT" })}.${b64(claims())}.`;
    expect(await verifier().verify(token)).toEqual({ ok: false, reason: "invalid" });
  });

  it("refuses a token signed with HS256 using the RSA public key as the secret (algorithm confusion)", async () => {
    const pem = await exportSPKI(rsa.publicKey);
    const token = await new SignJWT(claims())
      .setProtectedHeader({ alg: "HS256", kid: rsa.kid })
      .sign(new TextEncoder().encode(pem));
    const r = await verifier().verify(token);
    expect(r.ok).toBe(false);
    expect(r).toEqual({ ok: false, reason: "invalid" });
  });

  it("refuses a token signed by a key that is not in the JWKS but claims a published kid", async () => {
    const token = await mint(rogue, claims());
    expect(await verifier().verify(token)).toEqual({ ok: false, reason: "bad_signature" });
  });

  it("refuses a token signed by a key with an unpublished kid", async () => {
    const stranger = await makeKey("RS256", "unknown-kid");
    expect(await verifier().verify(await mint(stranger, claims()))).toEqual({ ok: false, reason: "no_key" });
  });

  it("refuses a token whose payload was altered after signing", async () => {
    const token = await mint(rsa, claims());
    const [h, , s] = token.split(".");
    const forged = `${h}.${Buffer.from(JSON.stringify(claims({ scope: "admin" }))).toString("base64url")}.${s}`;
    expect(await verifier().verify(forged)).toEqual({ ok: false, reason: "bad_signature" });
  });

  it("refuses a token without exp", async () => {
    const { exp: _exp, ...noExp } = claims();
    expect(await verifier().verify(await mint(rsa, noExp))).toEqual({ ok: false, reason: "invalid" });
  });

  it("refuses a token without sub", async () => {
    const { sub: _sub, ...noSub } = claims();
    expect(await verifier().verify(await mint(rsa, noSub))).toEqual({ ok: false, reason: "invalid" });
  });

  it("refuses a 100 KB token unread, without touching the JWKS", async () => {
    const v = verifier();
    const before = server.hits;
    const token = await mint(rsa, claims({ pad: "x".repeat(100 * 1024) }));
    expect(token.length).toBeGreaterThan(100 * 1024);
    expect(await v.verify(token)).toEqual({ ok: false, reason: "malformed" });
    expect(server.hits).toBe(before);
  });

  it("refuses a kid with odd characters and never puts it into a request", async () => {
    const odd = { ...(await makeKey("RS256", "x")), kid: '../../jwks?x=1&"<script>\\\u0000\u202e' };
    const r = await verifier().verify(await mint(odd, claims()));
    expect(r).toEqual({ ok: false, reason: "no_key" });
    expect(server.paths.every((p) => p === "/jwks")).toBe(true);
  });

  it("refuses strings that are not JWTs", async () => {
    const v = verifier();
    for (const t of ["abc", "a.b", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.e30.", ""]) {
      const r = await v.verify(t);
      expect(r.ok, t).toBe(false);
    }
  });

  it("refuses an ES256 token when the allow-list names RS256 only", async () => {
    const v = verifier({ algorithms: ["RS256"] });
    expect(await v.verify(await mint(ec, claims()))).toEqual({ ok: false, reason: "invalid" });
  });

  it("refuses a token whose typ is not the required one when typ is configured", async () => {
    const v = verifier({ typ: "at+jwt" });
    expect((await v.verify(await mint(rsa, claims()))).ok).toBe(true);
    expect(await v.verify(await mint(rsa, claims(), { typ: "JWT" }))).toEqual({
      ok: false,
      reason: "invalid",
    });
  });

  it("never echoes the token in a refusal", async () => {
    const token = await mint(rsa, claims({ aud: "https://elsewhere.example" }));
    const r = await verifier().verify(token);
    const text = JSON.stringify(r);
    expect(text).not.toContain(token.split(".")[1]);
    expect(text).not.toContain(token.split(".")[2]);
  });
});

describe("the clock", () => {
  it("accepts a token up to the second before exp and refuses it at exp exactly", async () => {
    const exp = nowSec() + 1000;
    const token = await mint(rsa, claims({ exp }));
    let now = (exp - 1) * 1000;
    const v = verifier({}, { now: () => now, cache: false });
    expect((await v.verify(token)).ok).toBe(true);
    now = exp * 1000;
    expect(await v.verify(token)).toEqual({ ok: false, reason: "expired" });
  });

  it("applies clockToleranceSec to exp and nbf", async () => {
    const v = verifier({ clockToleranceSec: 30 });
    expect((await v.verify(await mint(rsa, claims({ exp: nowSec() - 10 })))).ok).toBe(true);
    expect((await v.verify(await mint(rsa, claims({ nbf: nowSec() + 10 })))).ok).toBe(true);
    expect((await v.verify(await mint(rsa, claims({ exp: nowSec() - 60 })))).ok).toBe(false);
  });
});

describe("the verified-token cache", () => {
  it("skips signature verification for a repeated token (counted by JWKS fetches with no key caching)", async () => {
    // refreshMs 0 makes every real verification fetch the JWKS; only cache hits avoid it.
    const v = verifier({ jwks: { refreshMs: 0, cooldownMs: 0 } });
    const token = await mint(rsa, claims());
    const before = server.hits;
    for (let i = 0; i < 5; i++) expect((await v.verify(token)).ok).toBe(true);
    expect(server.hits - before).toBe(1);
    expect(v.cache.size).toBe(1);
  });

  it("re-verifies once the cached token reaches exp", async () => {
    const exp = nowSec() + 100;
    let now = Date.now();
    const v = verifier({}, { now: () => now });
    const token = await mint(rsa, claims({ exp }));
    expect((await v.verify(token)).ok).toBe(true);
    now = exp * 1000;
    expect(await v.verify(token)).toEqual({ ok: false, reason: "expired" });
  });

  it("does not cache refusals", async () => {
    const v = verifier();
    await v.verify(await mint(rsa, claims({ aud: "https://x.example" })));
    expect(v.cache.size).toBe(0);
  });

  it("can be turned off", async () => {
    const v = verifier({ jwks: { refreshMs: 0, cooldownMs: 0 } }, { cache: false });
    const token = await mint(rsa, claims());
    const before = server.hits;
    for (let i = 0; i < 3; i++) expect((await v.verify(token)).ok).toBe(true);
    expect(server.hits - before).toBe(3);
  });
});

describe("JWKS behaviour", () => {
  it("accepts a key added to the JWKS after start (rotation), refetching on the unknown kid", async () => {
    const own = await startJwksServer([rsa.jwk]);
    extraServers.push(own);
    const v = verifier({ jwksUri: own.url, jwks: { cooldownMs: 50 } });
    expect((await v.verify(await mint(rsa, claims()))).ok).toBe(true);
    const next = await makeKey("ES256", "rotated-2");
    own.keys = [rsa.jwk, next.jwk];
    await sleep(80);
    expect((await v.verify(await mint(next, claims()))).ok).toBe(true);
    expect(own.hits).toBe(2);
  });

  it("refetches on unknown kids at most once per cooldown (an attacker cannot make us hammer the issuer)", async () => {
    const own = await startJwksServer([rsa.jwk]);
    extraServers.push(own);
    const v = verifier({ jwksUri: own.url, jwks: { cooldownMs: 60_000 } });
    expect((await v.verify(await mint(rsa, claims()))).ok).toBe(true);
    const results = await Promise.all(
      Array.from({ length: 25 }, async (_, i) =>
        v.verify(await mint({ ...rogue, kid: `random-${i}` }, claims())),
      ),
    );
    expect(results.every((r) => !r.ok && r.reason === "no_key")).toBe(true);
    expect(own.hits).toBe(1);
  });

  it("keeps verifying with the known keys after the JWKS server stops", async () => {
    const own = await startJwksServer([rsa.jwk]);
    // refreshMs 0: every verification would refetch; the stale keys must carry it.
    const v = verifier(
      { jwksUri: own.url, jwks: { refreshMs: 0, retryAfterFailureMs: 0 } },
      { cache: false },
    );
    expect((await v.verify(await mint(rsa, claims()))).ok).toBe(true);
    await own.stop();
    expect((await v.verify(await mint(rsa, claims({ sub: "another" })))).ok).toBe(true);
    expect(await v.verify(await mint(rogue, claims()))).toEqual({ ok: false, reason: "bad_signature" });
  });

  it("stops trusting the last keys once they are older than maxStaleMs", async () => {
    const own = await startJwksServer([rsa.jwk]);
    const v = verifier(
      { jwksUri: own.url, jwks: { refreshMs: 0, retryAfterFailureMs: 0, maxStaleMs: 100 } },
      { cache: false },
    );
    expect((await v.verify(await mint(rsa, claims()))).ok).toBe(true);
    await own.stop();
    await sleep(150);
    expect(await v.verify(await mint(rsa, claims()))).toEqual({ ok: false, reason: "no_key" });
  });

  it("fails closed with no_key when the JWKS was never reachable, and the process stays healthy", async () => {
    const v = verifier({ jwksUri: await deadUrl() });
    for (let i = 0; i < 3; i++) {
      expect(await v.verify(await mint(rsa, claims()))).toEqual({ ok: false, reason: "no_key" });
    }
  });

  it("does not retry a failing JWKS on every request", async () => {
    const own = await startJwksServer([rsa.jwk]);
    extraServers.push(own);
    own.failWith = 500;
    const v = verifier({ jwksUri: own.url, jwks: { retryAfterFailureMs: 60_000 } });
    for (let i = 0; i < 10; i++) {
      expect(await v.verify(await mint(rsa, claims()))).toEqual({ ok: false, reason: "no_key" });
    }
    expect(own.hits).toBe(1);
  });

  it("gives up on a JWKS that never answers after timeoutMs", async () => {
    const hang = createServer(() => {
      /* never answer */
    });
    await new Promise<void>((r) => hang.listen(0, "127.0.0.1", r));
    const { port } = hang.address() as AddressInfo;
    try {
      const v = verifier({ jwksUri: `http://127.0.0.1:${port}/jwks`, jwks: { timeoutMs: 200 } });
      const t0 = Date.now();
      expect(await v.verify(await mint(rsa, claims()))).toEqual({ ok: false, reason: "no_key" });
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      hang.closeAllConnections();
      hang.close();
    }
  });
});

describe("issuer metadata discovery", () => {
  it("finds jwks_uri by RFC 8414 path insertion", async () => {
    const own = await startJwksServer([rsa.jwk]);
    extraServers.push(own);
    const issuer = `${own.origin}/tenant-a`;
    own.docs.set("/.well-known/oauth-authorization-server/tenant-a", { issuer, jwks_uri: own.url });
    const v = createJwtVerifier({ publicUrl: AUDIENCE, issuers: [{ issuer }] });
    expect((await v.verify(await mint(rsa, claims({ iss: issuer })))).ok).toBe(true);
    expect(own.paths).toEqual(["/.well-known/oauth-authorization-server/tenant-a", "/jwks"]);
  });

  it("falls back to OpenID Connect discovery", async () => {
    const own = await startJwksServer([rsa.jwk]);
    extraServers.push(own);
    const issuer = own.origin;
    own.docs.set("/.well-known/openid-configuration", { issuer, jwks_uri: own.url });
    const v = createJwtVerifier({ publicUrl: AUDIENCE, issuers: [{ issuer }] });
    expect((await v.verify(await mint(rsa, claims({ iss: issuer })))).ok).toBe(true);
    expect(own.paths).toEqual([
      "/.well-known/oauth-authorization-server",
      "/.well-known/openid-configuration",
      "/jwks",
    ]);
  });

  it("refuses metadata that names another issuer (RFC 8414 §3.3)", async () => {
    const own = await startJwksServer([rsa.jwk]);
    extraServers.push(own);
    const issuer = own.origin;
    own.docs.set("/.well-known/oauth-authorization-server", {
      issuer: "https://evil.example",
      jwks_uri: own.url,
    });
    const v = createJwtVerifier({ publicUrl: AUDIENCE, issuers: [{ issuer }] });
    expect(await v.verify(await mint(rsa, claims({ iss: issuer })))).toEqual({ ok: false, reason: "no_key" });
    expect(own.hits).toBe(0);
  });
});

describe("several issuers", () => {
  it("verifies each issuer's tokens with that issuer's keys only", async () => {
    const other = await startJwksServer([ec.jwk]);
    extraServers.push(other);
    const v = createJwtVerifier({
      publicUrl: AUDIENCE,
      issuers: [
        { issuer: ISSUER, jwksUri: server.url },
        { issuer: "https://second.example", jwksUri: other.url },
      ],
    });
    expect(v.issuers).toEqual([ISSUER, "https://second.example"]);
    const r = await v.verify(await mint(ec, claims({ iss: "https://second.example" })));
    expect(r.ok && r.identity.principal).toBe("oauth:https://second.example#user-42");
    // The second issuer does not publish the RSA key: a token claiming it is refused.
    expect(await v.verify(await mint(rsa, claims({ iss: "https://second.example" })))).toEqual({
      ok: false,
      reason: "no_key",
    });
  });
});

describe("construction refuses unsafe options", () => {
  it.each(["none", "HS256", "HS512", "hs384"])("refuses the algorithm %s", (alg) => {
    let caught: unknown;
    try {
      verifier({ algorithms: ["RS256", alg] });
    } catch (err) {
      caught = err;
    }
    expect(isMcpGateError(caught, "ERR_INVALID_OPTION")).toBe(true);
  });

  it("refuses an issuer without an audience when no publicUrl is given", () => {
    expect(() => createJwtVerifier({ issuers: [{ issuer: ISSUER, jwksUri: server.url }] })).toThrow(
      /audience/,
    );
  });

  it("refuses an empty issuer list and a duplicate issuer", () => {
    expect(() => createJwtVerifier({ publicUrl: AUDIENCE, issuers: [] })).toThrow(/issuer/);
    expect(() =>
      createJwtVerifier({
        publicUrl: AUDIENCE,
        issuers: [
          { issuer: ISSUER, jwksUri: server.url },
          { issuer: ISSUER, jwksUri: server.url },
        ],
      }),
    ).toThrow(/twice/);
  });

  it("does no network work at construction", () => {
    const before = server.paths.length;
    verifier();
    createJwtVerifier({ publicUrl: AUDIENCE, issuers: [{ issuer: server.origin }] });
    expect(server.paths.length).toBe(before);
  });
});

describe("tokens from a real authorization server (oidc-provider, client_credentials, RFC 8707 resource)", () => {
  it("discovers the JWKS from the issuer metadata and verifies the issued JWT access token", async () => {
    const as = await startAuthServer({ format: "jwt" });
    try {
      const resource = "http://127.0.0.1:9/mcp";
      const v = createJwtVerifier({ publicUrl: resource, issuers: [{ issuer: as.issuer }] });
      const token = await as.token(resource, "tools:call");
      const r = await v.verify(token);
      expect(r).toMatchObject({
        ok: true,
        identity: {
          principal: `oauth:${as.issuer}#${as.client.id}`,
          scopes: ["tools:call"],
          clientId: as.client.id,
        },
      });
      // RFC 8414 metadata is tried first (oidc-provider v9 serves it), then the JWKS it names.
      expect(as.paths).toEqual(["/token", "/.well-known/oauth-authorization-server", "/jwks"]);
      // The same AS, a token for another resource: refused (audience = this server only).
      expect(await v.verify(await as.token("http://127.0.0.1:9/other"))).toEqual({
        ok: false,
        reason: "wrong_audience",
      });
    } finally {
      await as.stop();
    }
  });
});
