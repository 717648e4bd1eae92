import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/authn/api-key.js";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { type JwksServer, makeKey, mint, startJwksServer } from "../authn/jwks-fixture.js";
import { type AuthServer, startAuthServer } from "../authn/oidc-fixture.js";
import { INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type OtlpReceiver, startOtlpReceiver } from "../helpers/otlp-receiver.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";
import { registerTokenExchange, TOKEN_EXCHANGE_GRANT } from "../identity/token-exchange-grant.js";

/**
 * The leak test over exported spans (issue 17 item 3; the pattern of test/e2e/observability.test.ts):
 * every credential kind, valid and invalid, goes through a traced gateway; no credential, token,
 * key secret, cookie, secret header or the gateway's own upstream credential appears in any string
 * the collector receives — span names, attributes, events, status messages, the resource, the scope —
 * nor anywhere in the raw protobuf bodies.
 */

const ISSUER = "https://issuer.trace-leak.test";
const b62 = (n: number) =>
  Array.from(
    randomBytes(n),
    (b) => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[b % 62],
  ).join("");
/** The secret part of an mcpg_<id>_<secret> key: must not appear even without its prefix. */
const secretPart = (key: string) => key.split("_").slice(2).join("_");

describe("no credential in any exported span", () => {
  let dir: string;
  let otlp: OtlpReceiver;
  let upstream: RecordingUpstream;
  let jwks: JwksServer;
  let gw: TestGateway;
  const secrets: Record<string, string> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-trace-leak-"));
    const location = `sqlite:${join(dir, "keys.db")}`;
    const store = await openKeyStore(location);
    const good = await issueApiKey(store, { name: "good", scopes: ["tools:call"] });
    const revoked = await issueApiKey(store, { name: "revoked" });
    await store.revoke(revoked.record.id);
    await store.close();
    Object.assign(secrets, {
      stored: good.key,
      revoked: revoked.key,
      wrongSecret: generateApiKey(good.record.id).key,
      static: `static-${b62(40)}`,
      wrongStatic: `static-${b62(40)}`,
      cookie: `ck-${b62(32)}`,
      header: `hdr-${b62(32)}`,
      upstreamCredential: `up-${b62(32)}`,
      exportKey: `otlp-${b62(32)}`,
    });
    const signer = await makeKey("ES256", "k1");
    jwks = await startJwksServer([signer.jwk]);
    otlp = await startOtlpReceiver();
    upstream = await startRecordingUpstream();
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url, headers: { authorization: `Bearer ${secrets.upstreamCredential!}` } },
        auth: {
          apiKeys: { store: location },
          jwt: { issuer: ISSUER, jwksUri: jwks.url, algorithms: ["ES256"] },
        },
        // The upstream is also told who calls: a signed assertion in its own header (DESIGN.md §9).
        identity: { mode: "assertion", header: "x-mcpgate-identity" },
        tracing: { endpoint: otlp.url, headers: { "x-otlp-key": secrets.exportKey! } },
        logging: { level: "info", redactHeaders: ["X-Secret-Header"] },
      },
      { MCP_API_KEY: secrets.static!, OTEL_BSP_SCHEDULE_DELAY: "50" },
      "info",
    );
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: ISSUER, aud: gw.publicUrl, sub: "alice", scope: "tools:call" };
    secrets.jwt = await mint(signer, { ...claims, iat: now, exp: now + 300 });
    secrets.expiredJwt = await mint(signer, { ...claims, iat: now - 600, exp: now - 300 });
    secrets.forgedJwt = await mint(await makeKey("ES256", "k1"), { ...claims, iat: now, exp: now + 300 });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await otlp?.close();
    await jwks?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("exports spans for valid and refused credentials of every kind, and none of them holds a secret", async () => {
    for (const token of [secrets.static!, secrets.stored!, secrets.jwt!]) {
      const transport = new StreamableHTTPClientTransport(new URL(gw.url), {
        requestInit: {
          headers: {
            authorization: `Bearer ${token}`,
            cookie: `session=${secrets.cookie}`,
            "x-secret-header": secrets.header!,
            traceparent: `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`,
          },
        },
      });
      const client = new Client({ name: "trace-leak", version: "1.0.0" });
      await client.connect(transport);
      await client.callTool({ name: "echo", arguments: { message: "hi" } });
      await client.close();
    }
    for (const token of [
      secrets.revoked!,
      secrets.wrongSecret!,
      secrets.wrongStatic!,
      secrets.expiredJwt!,
      secrets.forgedJwt!,
    ]) {
      const res = await rawPost(gw.url, INIT, {
        authorization: `Bearer ${token}`,
        cookie: `s=${secrets.cookie}`,
      });
      expect(res.status).toBe(401);
    }
    // The upstream did get the gateway's own credential (so the test would see it, were it copied).
    expect(
      upstream.seen.some((r) => r.headers.authorization === `Bearer ${secrets.upstreamCredential}`),
    ).toBe(true);

    // Every identity assertion the upstream received is a secret too.
    const assertions = upstream.seen
      .map((r) => r.headers["x-mcpgate-identity"])
      .filter((v): v is string => typeof v === "string");
    expect(assertions.length).toBeGreaterThan(0);
    assertions.forEach((a, i) => {
      secrets[`assertion${i}`] = a;
    });

    await gw.close();
    const servers = otlp.spans.filter((s) => s.kind === "SERVER");
    expect(servers.filter((s) => s.status.code === "ERROR").length).toBeGreaterThanOrEqual(5);
    expect(
      otlp.spans.some(
        (s) => s.name === "mcpgate.authenticate" && s.attributes["mcpgate.auth.verifier"] === "oauth2",
      ),
    ).toBe(true);
    expect(
      otlp.spans.some(
        (s) =>
          s.name === "GET" &&
          String(s.attributes["url.full"]).startsWith(jwks.url.split("/").slice(0, 3).join("/")),
      ),
    ).toBe(true);
    expect(otlp.spans.some((s) => s.name === "mcpgate.keys.get")).toBe(true);
    expect(otlp.spans.some((s) => s.name === "mcpgate.identity")).toBe(true);

    const haystack = otlp.allStrings().join("\n");
    const raw = Buffer.concat(otlp.bodies).toString("latin1");
    for (const [name, secret] of Object.entries(secrets)) {
      const needles = [secret, secretPart(secret)].filter((n) => n.length >= 16);
      for (const needle of needles) {
        expect(haystack.includes(needle), `${name} in an exported span`).toBe(false);
        expect(raw.includes(needle), `${name} in a raw OTLP body`).toBe(false);
      }
    }
    // A JWT's signature and payload segments alone are secrets too.
    for (const jwt of [secrets.jwt!, secrets.expiredJwt!, secrets.forgedJwt!, ...assertions]) {
      for (const part of jwt.split(".").slice(1)) expect(raw.includes(part)).toBe(false);
    }
  });
});

describe("no introspected token or client secret in any exported span", () => {
  let as: AuthServer;
  let otlp: OtlpReceiver;
  let upstream: RecordingUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    as = await startAuthServer({ format: "opaque", scopes: ["tools:call"] });
    otlp = await startOtlpReceiver();
    upstream = await startRecordingUpstream();
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url },
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
        tracing: { endpoint: otlp.url },
      },
      { OTEL_BSP_SCHEDULE_DELAY: "50" },
      "info",
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await otlp?.close();
    await as?.stop();
  });

  it("the introspection call is a CLIENT span under authentication; a second use of the token is a cache hit", async () => {
    const token = await as.token(gw.publicUrl, "tools:call");
    const bogus = `opaque-${b62(43)}`;
    for (const t of [token, token, bogus]) {
      await rawPost(gw.url, INIT, { authorization: `Bearer ${t}` });
    }
    await gw.close();
    const auths = otlp.spans.filter((s) => s.name === "mcpgate.authenticate");
    expect(auths.map((s) => s.attributes["mcpgate.auth.cache_hit"])).toEqual([false, true, false]);
    const introspect = otlp.spans.filter(
      (s) => s.name === "POST" && s.attributes["url.full"] === as.introspectionEndpoint,
    );
    expect(introspect).toHaveLength(2);
    expect(introspect.every((s) => auths.some((a) => a.spanId === s.parentSpanId))).toBe(true);
    const basic = Buffer.from(`${as.gateway.id}:${as.gateway.secret}`).toString("base64");
    const raw = Buffer.concat(otlp.bodies).toString("latin1");
    const haystack = otlp.allStrings().join("\n");
    for (const needle of [token, bogus, as.gateway.secret, basic]) {
      expect(haystack.includes(needle)).toBe(false);
      expect(raw.includes(needle)).toBe(false);
    }
  });
});

describe("RFC 8693 token exchange is traced, and neither token nor client secret is exported", () => {
  const RESOURCE = "https://gw.example/notes/mcp";
  let as: AuthServer;
  let otlp: OtlpReceiver;
  let upstream: RecordingUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    as = await startAuthServer({ gatewayGrantTypes: [TOKEN_EXCHANGE_GRANT] });
    registerTokenExchange(as);
    otlp = await startOtlpReceiver();
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
            identity: { mode: "token-exchange", clientId: as.gateway.id, clientSecret: as.gateway.secret },
          },
        ],
        tracing: { endpoint: otlp.url },
      },
      { OTEL_BSP_SCHEDULE_DELAY: "50" },
      "info",
    );
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await otlp?.close();
    await as?.stop();
  });

  it("the exchange is a child span of the request with its HTTP call under it", async () => {
    const token = await as.token(RESOURCE);
    const res = await rawPost(`${new URL(gw.url).origin}/notes/mcp`, INIT, {
      authorization: `Bearer ${token}`,
    });
    expect(res.status).toBe(200);
    await gw.close();
    const identity = otlp.spans.find((s) => s.name === "mcpgate.identity");
    expect(identity?.attributes).toMatchObject({
      "mcpgate.identity.mode": "token-exchange",
      "mcpgate.identity.cached": false,
    });
    const server = otlp.spans.find((s) => s.spanId === identity?.parentSpanId);
    expect(server?.kind).toBe("SERVER");
    expect(server?.attributes["mcpgate.upstream"]).toBe("notes");
    // Its HTTP calls: the issuer's metadata (discovery of the token endpoint), then the exchange.
    const calls = otlp.spans.filter((s) => s.parentSpanId === identity?.spanId && s.kind === "CLIENT");
    const exchange = calls.find((s) => s.name === "POST");
    expect(exchange?.attributes["url.full"]).toBe(as.tokenEndpoint);
    expect(exchange?.attributes["http.response.status_code"]).toBe(200);

    const exchanged = upstream.seen
      .map((r) => String(r.headers.authorization ?? ""))
      .filter((a) => a.startsWith("Bearer "))
      .map((a) => a.slice(7));
    expect(exchanged.length).toBeGreaterThan(0);
    const raw = Buffer.concat(otlp.bodies).toString("latin1");
    const haystack = otlp.allStrings().join("\n");
    for (const needle of [
      token.split(".")[2]!,
      as.gateway.secret,
      ...exchanged.map((t) => t.split(".").at(-1)!),
    ]) {
      expect(haystack.includes(needle)).toBe(false);
      expect(raw.includes(needle)).toBe(false);
    }
  });
});
