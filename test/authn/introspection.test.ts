import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIntrospectionVerifier } from "../../src/authn/introspection.js";
import { createJwtVerifier } from "../../src/authn/jwt.js";
import { isMcpGateError } from "../../src/core/errors.js";
import { deadUrl } from "./jwks-fixture.js";
import { type AuthServer, startAuthServer } from "./oidc-fixture.js";

const RESOURCE = "http://127.0.0.1:1/mcp";

describe("introspection against a real authorization server (oidc-provider, opaque tokens)", () => {
  let as: AuthServer;

  beforeAll(async () => {
    as = await startAuthServer({ format: "opaque" });
  });
  afterAll(async () => {
    await as.stop();
  });

  function verifier(extra: Partial<Parameters<typeof createIntrospectionVerifier>[0]> = {}) {
    return createIntrospectionVerifier({
      issuer: as.issuer,
      endpoint: as.introspectionEndpoint,
      clientId: as.gateway.id,
      clientSecret: as.gateway.secret,
      audience: RESOURCE,
      ...extra,
    });
  }

  it("accepts an active opaque token issued for this resource and maps it to an identity", async () => {
    const token = await as.token(RESOURCE, "tools:call");
    expect(token.split(".").length).toBe(1);
    const r = await verifier().verify(token);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.identity).toMatchObject({
      principal: `oauth:${as.issuer}#${as.client.id}`,
      kind: "oauth2",
      subject: as.client.id,
      clientId: as.client.id,
      scopes: ["tools:call"],
    });
    expect(r.identity.expiresAt).toBeGreaterThan(Date.now() / 1000);
  });

  it("refuses a token the server does not know as inactive", async () => {
    expect(await verifier().verify("not-a-real-token-value-0123456789")).toEqual({
      ok: false,
      reason: "inactive",
    });
  });

  it("refuses a token issued for another resource", async () => {
    const token = await as.token("https://other.example/mcp");
    expect(await verifier().verify(token)).toEqual({ ok: false, reason: "wrong_audience" });
  });

  it("refuses an active token when the AS names another issuer", async () => {
    const token = await as.token(RESOURCE);
    const v = verifier({ issuer: "https://someone-else.example" });
    expect(await v.verify(token)).toEqual({ ok: false, reason: "wrong_issuer" });
  });

  it("caches an active result by token hash: a repeat costs no introspection call", async () => {
    const token = await as.token(RESOURCE);
    const v = verifier();
    const count = () => as.paths.filter((p) => p === "/token/introspection").length;
    const before = count();
    for (let i = 0; i < 4; i++) expect((await v.verify(token)).ok).toBe(true);
    expect(count() - before).toBe(1);
  });

  it("stops trusting a cached result at the token's exp", async () => {
    const token = await as.token(RESOURCE);
    let now = Date.now();
    const v = verifier({ now: () => now });
    const r = await v.verify(token);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    now = r.identity.expiresAt! * 1000;
    expect(v.cache.get(token)).toBeUndefined();
    expect(await v.verify(token)).toEqual({ ok: false, reason: "expired" });
  });

  it("is refused by the AS without the gateway's client credentials (and says so with ERR_INTROSPECTION)", async () => {
    const v = verifier({ clientSecret: "wrong-secret" });
    const token = await as.token(RESOURCE);
    const err = await v.verify(token).catch((e: unknown) => e);
    expect(isMcpGateError(err, "ERR_INTROSPECTION")).toBe(true);
    expect(String((err as Error).message)).not.toContain(token);
  });

  it("serves opaque tokens through createJwtVerifier when the issuer configures introspection", async () => {
    const v = createJwtVerifier({
      publicUrl: RESOURCE,
      issuers: [
        {
          issuer: as.issuer,
          introspection: {
            endpoint: as.introspectionEndpoint,
            clientId: as.gateway.id,
            clientSecret: as.gateway.secret,
          },
        },
      ],
    });
    const token = await as.token(RESOURCE, "admin");
    expect(v.accepts(token)).toBe(true);
    expect(v.accepts("mcpg_AbCdEf12_secretsecretsecretsecretsecret12")).toBe(false);
    const r = await v.verify(token);
    expect(r.ok && r.identity.scopes).toEqual(["admin"]);
    expect(await v.verify("unknown-opaque-token-abcdef")).toEqual({ ok: false, reason: "inactive" });
  });
});

describe("introspection endpoint failures and odd answers", () => {
  let server: Server;
  let answer: { status: number; body: string };
  let lastAuth: string | undefined;
  let url: string;

  beforeAll(async () => {
    server = createServer((req, res) => {
      lastAuth = req.headers.authorization;
      req.resume();
      req.on("end", () =>
        res.writeHead(answer.status, { "content-type": "application/json" }).end(answer.body),
      );
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const exp = () => Math.floor(Date.now() / 1000) + 300;
  const v = (extra = {}) =>
    createIntrospectionVerifier({
      issuer: "https://as.example",
      endpoint: url,
      clientId: "rs:one",
      clientSecret: "s3cr&t",
      audience: "https://mcp.example/mcp",
      ...extra,
    });
  const reply = (body: unknown, status = 200) => {
    answer = { status, body: typeof body === "string" ? body : JSON.stringify(body) };
  };

  it("sends the client credentials form-urlencoded in HTTP Basic (RFC 6749 §2.3.1)", async () => {
    reply({ active: false });
    await v().verify("tok-1");
    expect(lastAuth).toBe(`Basic ${Buffer.from("rs%3Aone:s3cr%26t").toString("base64")}`);
  });

  it("refuses an active answer without exp", async () => {
    reply({ active: true, sub: "u", aud: "https://mcp.example/mcp" });
    expect(await v().verify("tok-2")).toEqual({ ok: false, reason: "invalid" });
  });

  it("refuses an active answer without aud unless requireAudience is false", async () => {
    reply({ active: true, sub: "u", exp: exp() });
    expect(await v().verify("tok-3")).toEqual({ ok: false, reason: "wrong_audience" });
    expect((await v({ requireAudience: false }).verify("tok-3")).ok).toBe(true);
  });

  it("refuses an active answer whose exp has passed", async () => {
    reply({ active: true, sub: "u", aud: "https://mcp.example/mcp", exp: 1000 });
    expect(await v().verify("tok-4")).toEqual({ ok: false, reason: "expired" });
  });

  it("throws ERR_INTROSPECTION on a 500, on non-JSON, and on an answer without a boolean active", async () => {
    for (const [body, status] of [
      ["oops", 500],
      ["<html>", 200],
      [{ active: "yes" }, 200],
    ] as const) {
      reply(body, status);
      const err = await v()
        .verify("tok-5")
        .catch((e: unknown) => e);
      expect(isMcpGateError(err, "ERR_INTROSPECTION"), JSON.stringify(body)).toBe(true);
    }
  });

  it("maps a 400 about the token to inactive, and a 400/401 about our request to ERR_INTROSPECTION", async () => {
    for (const error of ["unsupported_token_type", "invalid_request", "invalid_token"]) {
      reply({ error }, 400);
      expect(await v().verify("tok-6"), error).toEqual({ ok: false, reason: "inactive" });
    }
    for (const [body, status] of [
      [{ error: "invalid_client" }, 401],
      [{ error: "invalid_client" }, 400],
      ["bad request", 400],
      [{ error: "unsupported_token_type" }, 500],
    ] as const) {
      reply(body, status);
      const err = await v()
        .verify("tok-7")
        .catch((e: unknown) => e);
      expect(isMcpGateError(err, "ERR_INTROSPECTION"), JSON.stringify(body)).toBe(true);
    }
  });

  it("throws ERR_INTROSPECTION when the endpoint is unreachable, without the token in the message", async () => {
    const dead = createIntrospectionVerifier({
      issuer: "https://as.example",
      endpoint: await deadUrl("/introspect"),
      audience: "https://mcp.example/mcp",
      timeoutMs: 500,
    });
    const err = await dead.verify("secret-token-value-xyz").catch((e: unknown) => e);
    expect(isMcpGateError(err, "ERR_INTROSPECTION")).toBe(true);
    expect(JSON.stringify({ m: (err as Error).message, c: String((err as Error).cause) })).not.toContain(
      "secret-token-value-xyz",
    );
  });

  it("refuses half-configured client credentials at construction", () => {
    expect(() => v({ clientSecret: undefined })).toThrow(/go together/);
  });
});
