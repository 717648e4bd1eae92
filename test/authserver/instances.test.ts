import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisOAuthStore } from "../../src/stores/oauth-redis.js";
import { createSqliteOAuthStore } from "../../src/stores/oauth-sqlite.js";
import { createSqliteSigningKeyStore } from "../../src/stores/signing-keys-sqlite.js";
import {
  Agent,
  codeRequest,
  exchangeCode,
  pkce,
  registerClient,
  startTestAuthServer,
  type TestAuthServer,
  tokenRequest,
} from "./harness.js";

const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const REDIRECT = "http://127.0.0.1:9/callback";

/**
 * Two instances of one authorization server (one issuer) behind a load balancer: clients, grants and
 * refresh tokens in one SQLite file, codes, interactions and browser sessions in Redis. Every step
 * of a flow lands on the other instance than the step before.
 */
describe("several instances serve one authorization server (SQLite + Redis)", () => {
  let dir: string;
  let a: TestAuthServer;
  let b: TestAuthServer;
  const prefix = `mcpgate-as-${randomBytes(4).toString("hex")}:`;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-as-multi-"));
    const file = join(dir, "mcpgate.db");
    const shared = async () => {
      const store = createSqliteOAuthStore({ path: file });
      await store.init();
      const shortLivedStore = createRedisOAuthStore({ url: REDIS_URL, prefix });
      await shortLivedStore.init();
      const signingKeys = createSqliteSigningKeyStore({ path: file });
      await signingKeys.init();
      return { store, shortLivedStore, signingKeys };
    };
    a = await startTestAuthServer(async () => shared());
    b = await startTestAuthServer(async () => ({
      ...(await shared()),
      issuer: a.issuer,
      resources: [a.resource],
      login: { apiKey: { verifier: a.loginVerifier, keys: a.keys } },
    }));
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs authorize → login → consent → token → refresh alternating between instances", async () => {
    const agent = new Agent();
    const on = (i: number, url: string) =>
      url.replace(a.issuer, i % 2 === 0 ? a.issuer : `http://127.0.0.1:${new URL(b.issuer).port}`);
    const clientId = await registerClient(`http://127.0.0.1:${new URL(b.issuer).port}`, [REDIRECT]);
    const p = pkce();
    const params = new URLSearchParams(codeRequest(clientId, p.challenge, a.resource, REDIRECT));
    let step = 0;
    let res = await agent.fetch(on(step++, `${a.issuer}/oauth/authorize?${params}`));
    let html = "";
    let code: string | null = null;
    for (let i = 0; i < 12 && !code; i++) {
      if (res.status === 303 || res.status === 302) {
        const next = new URL(res.headers.get("location")!, a.issuer);
        if (next.href.startsWith(REDIRECT)) {
          code = next.searchParams.get("code");
          break;
        }
        res = await agent.fetch(on(step++, next.href));
        continue;
      }
      html = await res.text();
      expect(res.status, html.slice(0, 300)).toBe(200);
      const action = /action="([^"]+)"/.exec(html)![1]!;
      const csrf = /name="csrf" value="([^"]+)"/.exec(html)![1]!;
      const body: Record<string, string> = html.includes(`name="key"`)
        ? { csrf, key: a.key }
        : { csrf, decision: "approve" };
      res = await agent.fetch(on(step++, `${a.issuer}${action}`), {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(body).toString(),
      });
    }
    expect(code).toBeTruthy();
    expect(step).toBeGreaterThanOrEqual(5);
    const tok = await exchangeCode(on(step++, a.issuer), {
      code: code!,
      redirectUri: REDIRECT,
      clientId: clientId,
      verifier: p.verifier,
      resource: a.resource,
    });
    expect(tok.status).toBe(200);
    // Either instance verifies it (same keys), and refreshes it.
    expect((await a.as.verifier.verify(tok.body.access_token!)).ok).toBe(true);
    expect((await b.as.verifier.verify(tok.body.access_token!)).ok).toBe(true);
    const refreshed = await tokenRequest(on(step++, a.issuer), {
      grant_type: "refresh_token",
      refresh_token: tok.body.refresh_token!,
      client_id: clientId,
    });
    expect(refreshed.status).toBe(200);
    // Reuse detected on the other instance too.
    const reuse = await tokenRequest(on(step++, a.issuer), {
      grant_type: "refresh_token",
      refresh_token: tok.body.refresh_token!,
      client_id: clientId,
    });
    expect(reuse.body.error).toBe("invalid_grant");
  });
});
