import { randomBytes } from "node:crypto";
import { decodeJwt, decodeProtectedHeader } from "jose";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort } from "../../src/gateway/free-port.js";
import { openSigningKeyStore } from "../../src/stores/signing-keys.js";
import { verifyGatewayAssertion } from "../../src/upstream/index.js";
import { type AuthServer, startAuthServer } from "../authn/oidc-fixture.js";
import { connectClient, INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";
import {
  registerTokenExchange,
  TOKEN_EXCHANGE_GRANT,
  type TokenExchangeLog,
} from "../identity/token-exchange-grant.js";
import { type ExampleUpstream, startExampleUpstream } from "../upstream/example-process.js";

/** Identity for upstreams through the whole gateway (issue 15), with real parts only. */
const STATIC_KEY = `identity-e2e-${randomBytes(12).toString("hex")}`;
const env = { MCP_API_KEY: STATIC_KEY };
const originOf = (gw: TestGateway) => new URL(gw.url).origin;
const textOf = (r: unknown) => (r as { content: Array<{ text: string }> }).content[0]!.text;

describe("an SDK upstream that verifies assertions with mcpgate/upstream (examples/upstream-with-identity.ts)", () => {
  let example: ExampleUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    const port = await findFreePort("127.0.0.1");
    const upstreamUrl = `http://127.0.0.1:${port}/mcp`;
    gw = await startTestGateway(
      {
        identity: { keyStore: "memory:" },
        upstreams: [{ name: "notes", path: "/notes/mcp", url: upstreamUrl, identity: { mode: "assertion" } }],
      },
      env,
    );
    example = await startExampleUpstream({
      GATEWAY_URL: originOf(gw),
      AUDIENCE: upstreamUrl,
      PORT: String(port),
    });
  }, 90_000);
  afterAll(async () => {
    await example?.stop();
    await gw?.close();
  });

  it("a tool handler reads the caller from extra.authInfo", async () => {
    const { client } = await connectClient(`${originOf(gw)}/notes/mcp`, STATIC_KEY);
    const who = JSON.parse(textOf(await client.callTool({ name: "whoami", arguments: {} })));
    expect(who).toMatchObject({ principal: "static", kind: "static_key", clientId: "static" });
    expect(who.assertionId).toBeTypeOf("string");
    await client.close();
  });
});

describe("RFC 8693 token exchange through the gateway (oidc-provider with a token-exchange grant)", () => {
  const RESOURCE = "https://gw.example/notes/mcp";
  let as: AuthServer;
  let log: TokenExchangeLog;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    as = await startAuthServer({ gatewayGrantTypes: [TOKEN_EXCHANGE_GRANT] });
    log = registerTokenExchange(as);
    upstream = await startRecordingUpstream();
    gw = await startTestGateway(
      {
        auth: { jwt: { issuer: as.issuer, audience: RESOURCE } },
        identity: { keyStore: "memory:" },
        upstreams: [
          {
            name: "notes",
            path: "/notes/mcp",
            url: upstream.url,
            identity: {
              mode: "token-exchange",
              clientId: as.gateway.id,
              clientSecret: as.gateway.secret,
              forKeys: "refuse",
            },
          },
        ],
      },
      env,
    );
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await as?.stop();
  });

  it("sends the upstream a token issued for it, exchanged once per (token, upstream)", async () => {
    const token = await as.token(RESOURCE);
    const before = log.requests;
    const { client } = await connectClient(`${originOf(gw)}/notes/mcp`, token);
    await client.listTools();
    await client.callTool({ name: "echo", arguments: { message: "x" } });
    await client.callTool({ name: "echo", arguments: { message: "y" } });
    await client.close();
    expect(log.requests - before).toBe(1);
    const sent = upstream.seen.map((s) => String(s.headers.authorization ?? "")).filter(Boolean);
    expect(sent.length).toBeGreaterThanOrEqual(4);
    expect(new Set(sent).size).toBe(1);
    const claims = decodeJwt(sent[0]!.slice(7));
    expect(claims).toMatchObject({ aud: upstream.url, sub: as.client.id, act: { sub: as.gateway.id } });
    // The caller's own token never reaches the upstream, in any header or body.
    expect(JSON.stringify(upstream.seen)).not.toContain(token);
    expect(JSON.stringify(upstream.seen)).not.toContain(token.split(".")[2]);
  });

  it("answers an exchange failure with a 502 JSON-RPC error, forwards nothing, and audits it", async () => {
    const token = await as.token(RESOURCE);
    const seenBefore = upstream.seen.length;
    log.refuseNext = 1;
    const res = await rawPost(`${originOf(gw)}/notes/mcp`, INIT, { authorization: `Bearer ${token}` });
    expect(res.status).toBe(502);
    const body = res.json() as { error?: { code: number; message: string } };
    expect(body.error?.code).toBeTypeOf("number");
    expect(res.text).not.toMatch(/policy|invalid_grant|refused by/);
    expect(upstream.seen.length).toBe(seenBefore);
    expect(gw.logs.some((l) => /exchange/.test(l) && /notes/.test(l))).toBe(true);
    expect(gw.logs.join("\n")).not.toContain(token);
  });

  it("refuses an API-key caller with forKeys: refuse (502), sending nothing upstream", async () => {
    const seenBefore = upstream.seen.length;
    const res = await rawPost(`${originOf(gw)}/notes/mcp`, INIT, { authorization: `Bearer ${STATIC_KEY}` });
    expect(res.status).toBe(502);
    expect(upstream.seen.length).toBe(seenBefore);
  });
});

describe("signing-key rotation with two gateway instances on one PostgreSQL key store", () => {
  const pgUrl = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const schema = `mcpgate_idrot_${randomBytes(4).toString("hex")}`;
  const store = `${pgUrl}?schema=${schema}`;
  const SEAL = `id-seal-${randomBytes(24).toString("hex")}`;
  let upstream: RecordingUpstream;
  let a: TestGateway;
  let b: TestGateway;
  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    const config = {
      identity: { keyStore: store },
      upstreams: [
        { name: "notes", path: "/notes/mcp", url: upstream.url, identity: { mode: "assertion" as const } },
      ],
    };
    // Two instances starting together agree on one first key (the store's lock); the key is sealed
    // at rest with the secret both are given.
    const sealedEnv = { ...env, MCPGATE_SIGNING_KEY_SECRET: SEAL };
    [a, b] = await Promise.all([startTestGateway(config, sealedEnv), startTestGateway(config, sealedEnv)]);
  }, 60_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await upstream?.close();
    const admin = new pg.Pool({ connectionString: pgUrl, max: 1 });
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  });

  const lastAssertion = () => String(upstream.seen.at(-1)?.headers.authorization ?? "").slice(7);
  /** A new session (so a new cache key: the gateway signs now), then a ping on it; its assertion. */
  const callThrough = async (gw: TestGateway) => {
    const auth = { authorization: `Bearer ${STATIC_KEY}` };
    const init = await rawPost(`${originOf(gw)}/notes/mcp`, INIT, auth);
    expect(init.status).toBe(200);
    const session = {
      ...auth,
      "mcp-session-id": init.headers.get("mcp-session-id")!,
      "mcp-protocol-version": "2025-06-18",
    };
    await rawPost(
      `${originOf(gw)}/notes/mcp`,
      { jsonrpc: "2.0", method: "notifications/initialized" },
      session,
    );
    const ping = await rawPost(
      `${originOf(gw)}/notes/mcp`,
      { jsonrpc: "2.0", id: 2, method: "ping" },
      session,
    );
    expect(ping.status).toBe(200);
    const jwt = lastAssertion();
    expect(decodeJwt(jwt).sid).toBe(session["mcp-session-id"]);
    return jwt;
  };

  const verifierAt = (gw: TestGateway) =>
    verifyGatewayAssertion({
      jwksUrl: `${originOf(gw)}/.well-known/jwks.json`,
      issuer: originOf(gw),
      audience: upstream.url,
    });

  it("each instance verifies the other's assertions, before and after a rotation", async () => {
    // Both instances publish the same set (their issuer differs only by port: check the keys).
    const [ja, jb] = await Promise.all(
      [a, b].map(
        async (gw) =>
          (await (await fetch(`${originOf(gw)}/.well-known/jwks.json`)).json()) as {
            keys: Array<{ kid: string }>;
          },
      ),
    );
    expect(ja!.keys.map((k) => k.kid)).toEqual(jb!.keys.map((k) => k.kid));
    const fromB = await callThrough(b);
    await callThrough(a); // A has read (and cached) the key set before the rotation
    const kid1 = decodeProtectedHeader(fromB).kid;
    expect(ja!.keys[0]!.kid).toBe(kid1);
    // B's assertion verifies against A's JWKS (issuer = B's origin, keys = A's set).
    const viaA = verifyGatewayAssertion({
      jwksUrl: `${originOf(a)}/.well-known/jwks.json`,
      issuer: originOf(b),
      audience: upstream.url,
    });
    expect((await viaA.verifyAccessToken(fromB)).extra?.principal).toBe("static");

    const keys = await openSigningKeyStore(store, { secret: SEAL });
    const r = await keys.rotate({ overlapMs: 3_600_000 });
    await keys.close();
    const admin = new pg.Pool({ connectionString: pgUrl, max: 1 });
    const { rows } = await admin.query(`SELECT private_jwk FROM "${schema}".signing_keys`);
    await admin.end();
    expect(rows).toHaveLength(2);
    expect(rows.every((row: { private_jwk: string }) => row.private_jwk.startsWith("sealed:v1:"))).toBe(true);
    // Instances read the key set at most every 5 s; a new session needs a new assertion.
    await new Promise((done) => setTimeout(done, 5_500));
    const fromA = await callThrough(a);
    expect(decodeProtectedHeader(fromA).kid).toBe(r.kid);
    const viaB = verifyGatewayAssertion({
      jwksUrl: `${originOf(b)}/.well-known/jwks.json`,
      issuer: originOf(a),
      audience: upstream.url,
    });
    expect((await viaB.verifyAccessToken(fromA)).clientId).toBe("static");
    // The old key is still published (overlap): the assertion B signed before still verifies.
    expect((await verifierAt(b).verifyAccessToken(fromB)).clientId).toBe("static");
    const published = (await (await fetch(`${originOf(b)}/.well-known/jwks.json`)).json()) as {
      keys: Array<{ kid: string }>;
    };
    expect(published.keys.map((k) => k.kid)).toEqual([r.kid, kid1]);
  }, 60_000);
});

describe("a caller cannot pose as someone else to the upstream", () => {
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    gw = await startTestGateway(
      {
        identity: { keyStore: "memory:", header: "X-Caller-Identity" },
        upstreams: [
          { name: "told", path: "/told/mcp", url: upstream.url, identity: { mode: "assertion" } },
          { name: "untold", path: "/untold/mcp", url: upstream.url },
        ],
      },
      env,
    );
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it("replaces a client-sent identity header, and never relays one where identity is off", async () => {
    const forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJrZXk6YWRtaW4ifQ.";
    const headers = {
      authorization: `Bearer ${STATIC_KEY}`,
      "x-caller-identity": forged,
      "mcp-param-x": "y",
    };
    expect((await rawPost(`${originOf(gw)}/told/mcp`, INIT, headers)).status).toBe(200);
    const told = upstream.seen.at(-1)!.headers;
    expect(told["x-caller-identity"]).not.toBe(forged);
    expect(decodeJwt(String(told["x-caller-identity"])).sub).toBe("static");
    expect(told.authorization).toBeUndefined(); // the identity went to its own header; no credential relayed
    expect((await rawPost(`${originOf(gw)}/untold/mcp`, INIT, headers)).status).toBe(200);
    const untold = upstream.seen.at(-1)!.headers;
    expect(untold["x-caller-identity"]).toBeUndefined();
    expect(JSON.stringify(upstream.seen)).not.toContain(STATIC_KEY);
  });
});

describe("the one-upstream shorthand with identity", () => {
  it("signs for upstream: as for an upstreams entry (aud = its url), and publishes the JWKS", async () => {
    const upstream = await startRecordingUpstream();
    const gw = await startTestGateway(
      { identity: { mode: "assertion", keyStore: "memory:", ttl: "2m" }, upstream: { url: upstream.url } },
      env,
    );
    try {
      expect((await rawPost(gw.url, INIT, { authorization: `Bearer ${STATIC_KEY}` })).status).toBe(200);
      const jwt = String(upstream.seen.at(-1)!.headers.authorization).slice(7);
      const verifier = verifyGatewayAssertion({
        jwksUrl: `${originOf(gw)}/.well-known/jwks.json`,
        issuer: originOf(gw),
        audience: upstream.url,
      });
      const info = await verifier.verifyAccessToken(jwt);
      expect(info.extra?.principal).toBe("static");
      const { exp, iat } = decodeJwt(jwt);
      expect(exp! - iat!).toBe(120);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
