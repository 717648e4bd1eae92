import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { importJWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Identity } from "../../src/core/identity.js";
import { type AssertionSigner, createAssertionSigner } from "../../src/identity/assertion-signer.js";
import { createMemorySigningKeyStore, type SigningKeyStore } from "../../src/stores/signing-keys.js";
import { verifyGatewayAssertion } from "../../src/upstream/index.js";
import { connectClient } from "../helpers/client.js";
import { type ExampleUpstream, startExampleUpstream } from "./example-process.js";

let keys: SigningKeyStore;
let signer: AssertionSigner;
let jwksServer: Server;
let gateway: string;
let jwksFetches = 0;
const alice: Identity = {
  principal: "key:Alice123",
  kind: "api_key",
  subject: "Alice123",
  scopes: ["tools:call", "notes:write"],
  tenant: "acme",
};
const AUD = "http://127.0.0.1:3001/mcp";

beforeAll(async () => {
  keys = createMemorySigningKeyStore();
  await keys.init();
  jwksServer = createServer(async (req, res) => {
    if (req.url !== "/.well-known/jwks.json") return void res.writeHead(404).end();
    jwksFetches++;
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ keys: (await keys.current()).publicJwks }));
  });
  await new Promise<void>((r) => jwksServer.listen(0, "127.0.0.1", r));
  gateway = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}`;
  signer = createAssertionSigner({ keys, issuer: gateway, keyRefreshMs: 0 });
});
afterAll(() => new Promise<void>((r) => jwksServer.close(() => r())));

const verifier = () =>
  verifyGatewayAssertion({ jwksUrl: `${gateway}/.well-known/jwks.json`, issuer: gateway, audience: AUD });

describe("verifyGatewayAssertion (mcpgate/upstream)", () => {
  it("maps a valid assertion to the SDK's AuthInfo", async () => {
    const jwt = await signer.sign({ identity: alice, audience: AUD, sessionId: "s-1" });
    const info = await verifier().verifyAccessToken(jwt);
    expect(info).toMatchObject({
      token: jwt,
      clientId: "Alice123",
      scopes: ["tools:call", "notes:write"],
      extra: {
        principal: "key:Alice123",
        kind: "api_key",
        subject: "Alice123",
        tenant: "acme",
        sessionId: "s-1",
      },
    });
    expect(info.resource?.href).toBe(AUD);
    expect(info.expiresAt).toBeGreaterThan(Date.now() / 1000);
    expect(info.extra?.assertionId).toBeTypeOf("string");
  });

  it("reads the OAuth subject out of an oauth principal", async () => {
    const bob: Identity = {
      principal: "oauth:https://as.example.com/t#bob#1",
      kind: "oauth2",
      subject: "bob",
      scopes: [],
    };
    const info = await verifier().verifyAccessToken(await signer.sign({ identity: bob, audience: AUD }));
    expect(info.extra).toMatchObject({ subject: "bob#1", kind: "oauth2" });
    expect(info.scopes).toEqual([]);
  });

  it("finds a key rotated in after its JWKS was cached (refetch on an unknown kid)", async () => {
    const v = verifier();
    await v.verifyAccessToken(await signer.sign({ identity: alice, audience: AUD, sessionId: "r1" }));
    const before = jwksFetches;
    await keys.rotate({ overlapMs: 60_000 });
    // jose refetches after its cooldown (5 s here); wait it out rather than fake jose's clock.
    await new Promise((r) => setTimeout(r, 5100));
    const jwt = await signer.sign({ identity: alice, audience: AUD, sessionId: "r2" });
    expect((await v.verifyAccessToken(jwt)).clientId).toBe("Alice123");
    expect(jwksFetches).toBe(before + 1);
  });

  describe("refuses (InvalidTokenError → 401 in requireBearerAuth), with no detail", () => {
    const refuse = async (jwt: string, v = verifier()) => {
      const err = await v.verifyAccessToken(jwt).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.constructor.name).toBe("InvalidTokenError");
      expect(err?.message).toBe("invalid identity assertion");
    };
    const forge = async (header: Record<string, unknown>, claims: Record<string, unknown>) => {
      const { active } = await keys.current();
      return new SignJWT(claims)
        .setProtectedHeader({ alg: active.alg, kid: active.kid, ...header })
        .sign(await importJWK(active.privateJwk, active.alg));
    };
    const base = () => ({
      iss: gateway,
      aud: AUD,
      sub: "key:Alice123",
      scope: "tools:call",
      client_id: "Alice123",
      kind: "api_key",
      iat: Math.floor(Date.now() / 1000),
      exp: Math.floor(Date.now() / 1000) + 60,
      jti: "j-1",
    });

    it("an assertion for another upstream (aud)", async () => {
      await refuse(await signer.sign({ identity: alice, audience: "http://127.0.0.1:3002/mcp" }));
    });
    it("an assertion from another issuer", async () => {
      await refuse(await forge({ typ: "mcpgate-identity+jwt" }, { ...base(), iss: "https://evil.example" }));
    });
    it("an access token signed with the same keys (typ at+jwt), or a JWT without typ", async () => {
      await refuse(await forge({ typ: "at+jwt" }, base()));
      await refuse(await forge({}, base()));
    });
    it("an expired assertion", async () => {
      const t = Math.floor(Date.now() / 1000);
      await refuse(await forge({ typ: "mcpgate-identity+jwt" }, { ...base(), iat: t - 120, exp: t - 60 }));
    });
    it("an assertion without jti, kind or client_id", async () => {
      const { jti: _j, ...noJti } = base();
      await refuse(await forge({ typ: "mcpgate-identity+jwt" }, noJti));
      await refuse(await forge({ typ: "mcpgate-identity+jwt" }, { ...base(), kind: "root" }));
      const { client_id: _c, ...noClient } = base();
      await refuse(await forge({ typ: "mcpgate-identity+jwt" }, noClient));
    });
    it("a tampered signature, an unsigned token and garbage", async () => {
      const jwt = await signer.sign({ identity: alice, audience: AUD, sessionId: "t" });
      await refuse(`${jwt.slice(0, -6)}AAAAAA`);
      const [h, p] = jwt.split(".");
      const none = Buffer.from(JSON.stringify({ alg: "none", typ: "mcpgate-identity+jwt" })).toString(
        "base64url",
      );
      await refuse(`${none}.${p}.`);
      await refuse(`${h}.${p}`);
      await refuse("not a jwt");
    });
  });

  it("refuses bad options at construction", () => {
    expect(() => verifyGatewayAssertion({ issuer: "x", audience: "y" })).toThrow(/jwksUrl or jwks/);
    expect(() => verifyGatewayAssertion({ jwksUrl: "http://x", issuer: "", audience: "y" })).toThrow(
      /issuer/,
    );
  });
});

describe("examples/upstream-with-identity.ts (a real SDK server using requireBearerAuth)", () => {
  let example: ExampleUpstream;
  beforeAll(async () => {
    example = await startExampleUpstream({ GATEWAY_URL: gateway, AUDIENCE: AUD });
  }, 60_000);
  afterAll(() => example?.stop());

  it("hands the verified caller to a tool as extra.authInfo", async () => {
    const jwt = await signer.sign({ identity: alice, audience: AUD, sessionId: "ex-1" });
    const { client } = await connectClient(example.url, jwt);
    const r = (await client.callTool({ name: "whoami", arguments: {} })) as {
      content: Array<{ text: string }>;
    };
    expect(JSON.parse(r.content[0]!.text)).toMatchObject({
      clientId: "Alice123",
      principal: "key:Alice123",
      tenant: "acme",
      sessionId: "ex-1",
      scopes: ["tools:call", "notes:write"],
    });
    await client.close();
  });

  it("answers 401 to a request without an assertion or with a wrong one", async () => {
    const none = await fetch(example.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(none.status).toBe(401);
    const wrong = await signer.sign({ identity: alice, audience: "http://127.0.0.1:9/other" });
    const res = await fetch(example.url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${wrong}` },
      body: "{}",
    });
    expect(res.status).toBe(401);
    expect(await res.text()).not.toContain(wrong.slice(20, 60));
  });
});
