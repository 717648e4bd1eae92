import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createJwtVerifier,
  DEFAULT_TOKEN_CACHE_TTL_MS,
  type JwtVerifierOptions,
} from "../../src/authn/jwt.js";
import { type JwksServer, makeKey, mint, startJwksServer, type TestKey } from "./jwks-fixture.js";

/** Issue 14 item 6: a cached verification never outlives its signing key, nor `cacheTtl`. */
const ISSUER = "https://as.binding.example";
const AUDIENCE = "https://mcp.binding.example/mcp";
const nowSec = () => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const claims = (extra: Record<string, unknown> = {}) => ({
  iss: ISSUER,
  aud: AUDIENCE,
  sub: "user-7",
  // Far-future exp: only the key binding or the TTL can end the cached entry.
  exp: nowSec() + 30 * 86_400,
  iat: nowSec(),
  scope: "tools:call",
  ...extra,
});

describe("the verified-token cache is bound to the signing key", () => {
  let old: TestKey;
  let next: TestKey;
  let servers: JwksServer[] = [];
  beforeAll(async () => {
    [old, next] = await Promise.all([makeKey("RS256", "old-1"), makeKey("ES256", "next-2")]);
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    servers = [];
  });

  async function setup(keys = [old.jwk], opts: Partial<JwtVerifierOptions> = {}) {
    const jwks = await startJwksServer(keys);
    servers.push(jwks);
    const v = createJwtVerifier({
      publicUrl: AUDIENCE,
      issuers: [{ issuer: ISSUER, jwksUri: jwks.url, jwks: { cooldownMs: 20 } }],
      ...opts,
    });
    return { jwks, v };
  }

  it("drops a cached token once its kid left the JWKS (seen at the next fetch, e.g. a rotation)", async () => {
    const { jwks, v } = await setup();
    const cached = await mint(old, claims());
    expect((await v.verify(cached)).ok).toBe(true);
    expect((await v.verify(cached)).ok).toBe(true);
    expect(v.cache.size).toBe(1);
    // The issuer withdraws the old key and signs with a new one; the first new token makes us refetch.
    jwks.keys = [next.jwk];
    await sleep(40);
    expect((await v.verify(await mint(next, claims({ sub: "user-8" })))).ok).toBe(true);
    // A fresh token from the withdrawn key is refused…
    expect((await v.verify(await mint(old, claims({ sub: "user-9" })))).ok).toBe(false);
    // …and so is the cached one (before: it kept working until its exp, 30 days away).
    expect(await v.verify(cached)).toMatchObject({ ok: false });
  });

  it("binds a token without kid to the key set it was verified against", async () => {
    const { jwks, v } = await setup([{ ...old.jwk, kid: undefined }]);
    const noKid = { ...old, kid: undefined as unknown as string };
    const cached = await mint(noKid, claims());
    expect((await v.verify(cached)).ok).toBe(true);
    const hits = jwks.hits;
    expect((await v.verify(cached)).ok).toBe(true);
    expect(jwks.hits).toBe(hits);
    jwks.keys = [next.jwk];
    await sleep(40);
    expect((await v.verify(await mint(next, claims({ sub: "user-8" })))).ok).toBe(true);
    expect(await v.verify(cached)).toMatchObject({ ok: false });
  });

  it("keeps a cached token while its kid is still published after a refetch", async () => {
    const { jwks, v } = await setup();
    const cached = await mint(old, claims());
    expect((await v.verify(cached)).ok).toBe(true);
    jwks.keys = [old.jwk, next.jwk];
    await sleep(40);
    expect((await v.verify(await mint(next, claims({ sub: "user-8" })))).ok).toBe(true);
    const hits = jwks.hits;
    expect((await v.verify(cached)).ok).toBe(true);
    expect(jwks.hits).toBe(hits);
  });

  it("re-verifies a cached token after cacheTtl (default 5 min) whatever its exp", async () => {
    expect(DEFAULT_TOKEN_CACHE_TTL_MS).toBe(300_000);
    let now = Date.now();
    const jwks = await startJwksServer([old.jwk]);
    servers.push(jwks);
    // refreshMs 0: every real verification fetches the JWKS, so fetches count verifications.
    const v = createJwtVerifier({
      publicUrl: AUDIENCE,
      issuers: [{ issuer: ISSUER, jwksUri: jwks.url, jwks: { refreshMs: 0, cooldownMs: 0 } }],
      now: () => now,
    });
    const token = await mint(old, claims());
    expect((await v.verify(token)).ok).toBe(true);
    const first = jwks.hits;
    now += DEFAULT_TOKEN_CACHE_TTL_MS - 1_000;
    expect((await v.verify(token)).ok).toBe(true);
    expect(jwks.hits).toBe(first);
    now += 2_000;
    expect((await v.verify(token)).ok).toBe(true);
    expect(jwks.hits).toBe(first + 1);
  });

  it("honours a configured ttl", async () => {
    let now = Date.now();
    const jwks = await startJwksServer([old.jwk]);
    servers.push(jwks);
    const v = createJwtVerifier({
      publicUrl: AUDIENCE,
      issuers: [{ issuer: ISSUER, jwksUri: jwks.url, jwks: { refreshMs: 0, cooldownMs: 0 } }],
      cache: { ttlMs: 10_000 },
      now: () => now,
    });
    const token = await mint(old, claims());
    expect((await v.verify(token)).ok).toBe(true);
    const first = jwks.hits;
    now += 11_000;
    expect((await v.verify(token)).ok).toBe(true);
    expect(jwks.hits).toBe(first + 1);
  });
});
