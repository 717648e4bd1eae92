import { generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AuthServer, startAuthServer } from "../authn/oidc-fixture.js";
import { INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * Issue 14 item 9: an issuer with introspection and no jwksUri (the documented setup for opaque
 * tokens), a real authorization server (oidc-provider), and a forged JWT-shaped token. The AS
 * answers 400 `unsupported_token_type`: that is "not a token we know" (401 invalid_token, counted
 * by the guard), not an introspection outage (503).
 */
const PUBLIC = "http://127.0.0.1:1/mcp";

describe("introspection refusals are 401 invalid_token and count toward the guard", () => {
  let as: AuthServer;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  let forged: string;

  beforeAll(async () => {
    as = await startAuthServer({ format: "opaque", scopes: ["tools:call"] });
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({
      upstream: { url: upstream.url },
      publicUrl: PUBLIC,
      auth: {
        jwt: {
          issuer: as.issuer,
          introspection: {
            endpoint: as.introspectionEndpoint,
            clientId: as.gateway.id,
            clientSecret: as.gateway.secret,
          },
        },
      },
      guard: { failures: 4, window: "1m", lockout: "1m" },
    });
    const { privateKey } = await generateKeyPair("RS256");
    forged = await new SignJWT({ scope: "tools:call", aud: PUBLIC })
      .setProtectedHeader({ alg: "RS256", kid: "as-rsa-1" })
      .setIssuer(as.issuer)
      .setSubject("mallory")
      .setExpirationTime("10m")
      .sign(privateKey);
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await as?.stop();
  });

  it("the authorization server itself refuses the forged JWT with 400 (what the gateway must map)", async () => {
    const res = await fetch(as.introspectionEndpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${Buffer.from(`${as.gateway.id}:${as.gateway.secret}`).toString("base64")}`,
      },
      body: new URLSearchParams({ token: forged, token_type_hint: "access_token" }).toString(),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/unsupported_token_type|invalid_request/);
  });

  it("serves a real opaque token, answers the forged JWT 401 invalid_token, and locks the source out", async () => {
    const good = await as.token(PUBLIC, "tools:call");
    const ok = await rawPost(gw.url, INIT, { authorization: `Bearer ${good}` });
    expect(ok.status).toBe(200);

    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await rawPost(gw.url, INIT, { authorization: `Bearer ${forged}` });
      statuses.push(res.status);
      if (res.status === 401) expect(res.headers.get("www-authenticate")).toMatch(/error="invalid_token"/);
    }
    expect(statuses).toEqual([401, 401, 401]);
    // The fourth failure reaches the guard's limit: the source is locked out (counted, unlike a 503).
    const fourth = await rawPost(gw.url, INIT, { authorization: `Bearer ${forged}` });
    expect(fourth.status).toBe(429);
    const after = await rawPost(gw.url, INIT, { authorization: `Bearer ${good}` });
    expect(after.status).toBe(429);
    // No store error was recorded: the AS answered, it just does not know the token.
    const logs = gw.logs.join("\n");
    expect(logs).not.toMatch(/store_error/);
    expect(logs).not.toContain(forged);
    expect(logs).not.toContain(good);
  });
});
