import { randomUUID } from "node:crypto";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type JwksServer, makeKey, mint, startJwksServer, type TestKey } from "../authn/jwks-fixture.js";
import { type CannedUpstream, startCannedUpstream } from "../helpers/canned-upstream.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

const ISSUER = "https://as.fault.example";

describe("JWKS server killed", () => {
  let jwks: JwksServer;
  let known: TestKey;
  let unknown: TestKey;
  let upstream: CannedUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    known = await makeKey("RS256", "known-1");
    unknown = await makeKey("RS256", "rotated-in-later");
    jwks = await startJwksServer([known.jwk]);
    upstream = await startCannedUpstream();
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url },
        auth: { jwt: { issuer: ISSUER, jwksUri: jwks.url, algorithms: ["RS256"], jwksTimeout: "500ms" } },
        guard: { failures: 1_000_000 },
      },
      {},
      "warn",
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await jwks?.stop().catch(() => {});
  });

  /** A fresh token each time (new sub and jti), so the verified-token cache cannot answer for it. */
  async function tokenFrom(key: TestKey): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return mint(key, {
      iss: ISSUER,
      aud: gw.publicUrl,
      sub: `user-${randomUUID()}`,
      jti: randomUUID(),
      exp: now + 120,
    });
  }

  async function listTools(token: string) {
    const started = performance.now();
    const res = await request(gw.url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    await res.body.text();
    return {
      status: res.statusCode,
      challenge: res.headers["www-authenticate"],
      ms: performance.now() - started,
    };
  }

  it("keeps verifying tokens of known keys, answers 401 for unknown keys, and never crashes", async () => {
    expect((await listTools(await tokenFrom(known))).status).toBe(200);
    const hitsWhileUp = jwks.hits;
    expect(hitsWhileUp).toBeGreaterThan(0);

    await jwks.stop();

    // Known kid: verified from the keys already fetched, no JWKS needed.
    for (let i = 0; i < 5; i++) expect((await listTools(await tokenFrom(known))).status).toBe(200);

    // Unknown kid: a refetch is tried, fails, and the answer is a 401 within the JWKS timeout.
    const forwarded = upstream.seen.length;
    for (let i = 0; i < 5; i++) {
      const r = await listTools(await tokenFrom(unknown));
      expect(r.status).toBe(401);
      expect(String(r.challenge)).toContain('error="invalid_token"');
      expect(r.ms).toBeLessThan(2500);
    }
    expect(upstream.seen.length).toBe(forwarded);

    // The failed refetches did not cost the known keys: they still verify.
    expect((await listTools(await tokenFrom(known))).status).toBe(200);
    const health = await request(new URL("/healthz", gw.url));
    expect(health.statusCode).toBe(200);
    await health.body.text();
  });
});
