import { createLocalJWKSet, decodeJwt, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTokenExchanger } from "../../src/identity/token-exchange.js";
import { type AuthServer, startAuthServer } from "../authn/oidc-fixture.js";
import {
  registerTokenExchange,
  TOKEN_EXCHANGE_GRANT,
  type TokenExchangeLog,
} from "./token-exchange-grant.js";

const NOTES = "http://127.0.0.1:3001/mcp";
const FILES = "http://127.0.0.1:3002/mcp";
let as: AuthServer;
let log: TokenExchangeLog;

beforeAll(async () => {
  as = await startAuthServer({ gatewayGrantTypes: [TOKEN_EXCHANGE_GRANT] });
  log = registerTokenExchange(as);
});
afterAll(() => as.stop());

const exchanger = (over: Partial<Parameters<typeof createTokenExchanger>[0]> = {}) =>
  createTokenExchanger({
    tokenEndpoint: as.tokenEndpoint,
    clientId: as.gateway.id,
    clientSecret: as.gateway.secret,
    ...over,
  });

describe("RFC 8693 token exchange against a real authorization server (oidc-provider)", () => {
  it("exchanges the caller's token for one issued to the upstream, carrying the caller and the actor", async () => {
    const tx = exchanger();
    const subjectToken = await as.token("https://gateway.example/mcp");
    const r = await tx.exchange({ subjectToken, resource: NOTES, upstream: "notes" });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const { payload } = await jwtVerify(r.accessToken, createLocalJWKSet(as.jwks as never), {
      issuer: as.issuer,
      audience: NOTES,
    });
    expect(payload.sub).toBe(as.client.id);
    expect(payload.act).toEqual({ sub: as.gateway.id });
    expect(payload.client_id).toBe(as.gateway.id);
    expect(r.delegation).toEqual({ act: { sub: as.gateway.id } });
    expect(r.accessToken).not.toBe(subjectToken);
    expect(r.expiresAt).toBe(payload.exp);
  });

  it("caches per (token, upstream): one exchange per pair, counted at the server", async () => {
    const tx = exchanger();
    const a = await as.token("https://gateway.example/mcp");
    const b = await as.token("https://gateway.example/mcp");
    const before = log.requests;
    const results = await Promise.all([
      ...Array.from({ length: 5 }, () =>
        tx.exchange({ subjectToken: a, resource: NOTES, upstream: "notes" }),
      ),
      tx.exchange({ subjectToken: a, resource: FILES, upstream: "files" }),
      tx.exchange({ subjectToken: b, resource: NOTES, upstream: "notes" }),
    ]);
    for (let i = 0; i < 5; i++) await tx.exchange({ subjectToken: a, resource: NOTES, upstream: "notes" });
    expect(results.every((r) => r.ok)).toBe(true);
    expect(log.requests - before).toBe(3);
    expect(tx.stats.exchanges).toBe(3);
    const auds = results.map((r) => (r.ok ? decodeJwt(r.accessToken).aud : undefined));
    expect(auds[5]).toBe(FILES);
    expect(auds[0]).toBe(NOTES);
  });

  it("exchanges again once the cached token is near its expiry", async () => {
    let t = Date.now();
    const tx = exchanger({ now: () => t, expiryMarginMs: 10_000 });
    const token = await as.token("https://gateway.example/mcp");
    const before = log.requests;
    const first = await tx.exchange({ subjectToken: token, resource: NOTES, upstream: "notes" });
    expect(first.ok && first.cached).toBe(false);
    t += 289_000; // 300 s lifetime, 10 s margin: still cached
    expect((await tx.exchange({ subjectToken: token, resource: NOTES, upstream: "notes" })).ok).toBe(true);
    expect(log.requests - before).toBe(1);
    t += 2_000;
    await tx.exchange({ subjectToken: token, resource: NOTES, upstream: "notes" });
    expect(log.requests - before).toBe(2);
  });

  it("never caches past the subject token's own expiry", async () => {
    let t = Date.now();
    const tx = exchanger({ now: () => t, expiryMarginMs: 0 });
    const token = await as.token("https://gateway.example/mcp");
    const subjectExpiresAt = Math.floor(t / 1000) + 20;
    const before = log.requests;
    await tx.exchange({ subjectToken: token, subjectExpiresAt, resource: NOTES, upstream: "notes" });
    t += 21_000;
    await tx.exchange({ subjectToken: token, subjectExpiresAt, resource: NOTES, upstream: "notes" });
    expect(log.requests - before).toBe(2);
  });

  describe("failures are classes, never the issuer's words", () => {
    it("a refused exchange is `rejected`, and is not cached", async () => {
      const tx = exchanger();
      const token = await as.token("https://gateway.example/mcp");
      log.refuseNext = 1;
      const r = await tx.exchange({ subjectToken: token, resource: NOTES, upstream: "notes" });
      expect(r).toEqual({ ok: false, reason: "rejected" });
      expect(JSON.stringify(r)).not.toContain("policy");
      expect((await tx.exchange({ subjectToken: token, resource: NOTES, upstream: "notes" })).ok).toBe(true);
    });

    it("a forged subject token is `rejected`", async () => {
      const token = await as.token("https://gateway.example/mcp");
      const forged = `${token.slice(0, -4)}AAAA`;
      const r = await exchanger().exchange({ subjectToken: forged, resource: NOTES, upstream: "notes" });
      expect(r).toEqual({ ok: false, reason: "rejected" });
    });

    it("wrong client credentials are `rejected`", async () => {
      const token = await as.token("https://gateway.example/mcp");
      const r = await exchanger({ clientSecret: "wrong-secret-0123456789" }).exchange({
        subjectToken: token,
        resource: NOTES,
        upstream: "notes",
      });
      expect(r).toEqual({ ok: false, reason: "rejected" });
    });

    it("an unreachable token endpoint is `unavailable`", async () => {
      const r = await exchanger({ tokenEndpoint: "http://127.0.0.1:1/token", timeoutMs: 2000 }).exchange({
        subjectToken: "eyJ.x.y",
        resource: NOTES,
        upstream: "notes",
      });
      expect(r).toEqual({ ok: false, reason: "unavailable" });
    });

    it("discovery that fails is `unavailable`, not tried again for 5 s whatever the requests, then retried", async () => {
      let calls = 0;
      let t = Date.now();
      const tx = exchanger({
        now: () => t,
        tokenEndpoint: async () => {
          calls++;
          if (calls === 1) throw new Error("down");
          return as.tokenEndpoint;
        },
      });
      const token = await as.token("https://gateway.example/mcp");
      const ask = () => tx.exchange({ subjectToken: token, resource: NOTES, upstream: "notes" });
      expect(await ask()).toEqual({ ok: false, reason: "unavailable" });
      // A burst of requests right after: answered at once, without asking the issuer again.
      for (let i = 0; i < 20; i++) expect(await ask()).toEqual({ ok: false, reason: "unavailable" });
      expect(calls).toBe(1);
      t += 5_001;
      expect((await ask()).ok).toBe(true);
      expect(calls).toBe(2);
    });

    it("an oversized subject token is refused before any request", async () => {
      const before = log.requests;
      const r = await exchanger().exchange({
        subjectToken: "a".repeat(20_000),
        resource: NOTES,
        upstream: "notes",
      });
      expect(r).toEqual({ ok: false, reason: "token_too_large" });
      expect(log.requests).toBe(before);
    });
  });
});
