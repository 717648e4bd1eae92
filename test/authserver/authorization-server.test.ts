import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/core/audit-event.js";
import { createGuard } from "../../src/observe/guard.js";
import { createMemorySigningKeyStore } from "../../src/stores/signing-keys.js";
import {
  Agent,
  authorize,
  exchangeCode,
  pkce,
  registerClient,
  startTestAuthServer,
  type TestAuthServer,
  tokenRequest,
} from "./harness.js";

const REDIRECT = "http://127.0.0.1:9/callback";

let t: TestAuthServer;
let clientId: string;
/** What the authorization server audited. */
const audited: Array<Omit<AuditEvent, "time">> = [];

beforeAll(async () => {
  t = await startTestAuthServer({ audit: (e) => audited.push(e) });
  clientId = await registerClient(t.issuer, [REDIRECT]);
});
afterAll(async () => {
  await t.close();
});

function codeParams(challenge: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    client_id: clientId,
    response_type: "code",
    redirect_uri: REDIRECT,
    code_challenge: challenge,
    code_challenge_method: "S256",
    scope: "tools:call",
    resource: t.resource,
    state: "st-1",
    ...extra,
  };
}

async function fullFlow(agent = new Agent(), extra: Record<string, string> = {}) {
  const p = pkce();
  const { redirect, consentHtml } = await authorize(t, agent, codeParams(p.challenge, extra));
  const code = redirect.searchParams.get("code");
  expect(code, redirect.href).toBeTruthy();
  const tok = await exchangeCode(t.issuer, {
    code: code!,
    redirectUri: REDIRECT,
    clientId: clientId,
    verifier: p.verifier,
    resource: t.resource,
  });
  expect(tok.status, JSON.stringify(tok.body)).toBe(200);
  return { tok: tok.body, code: code!, verifier: p.verifier, redirect, consentHtml, agent };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("metadata (RFC 8414, MCP authorization server discovery)", () => {
  it("publishes S256-only PKCE, RFC 9207 iss, CIMD, registration and revocation at both well-known paths", async () => {
    const a = (await (await fetch(`${t.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    const b = await (await fetch(`${t.issuer}/.well-known/openid-configuration`)).json();
    expect(a).toEqual(b);
    expect(a.issuer).toBe(t.issuer);
    expect(a.code_challenge_methods_supported).toEqual(["S256"]);
    expect(a.authorization_response_iss_parameter_supported).toBe(true);
    expect(a.client_id_metadata_document_supported).toBe(true);
    expect(a.authorization_endpoint).toBe(`${t.issuer}/oauth/authorize`);
    expect(a.token_endpoint).toBe(`${t.issuer}/oauth/token`);
    expect(a.registration_endpoint).toBe(`${t.issuer}/oauth/register`);
    expect(a.revocation_endpoint).toBe(`${t.issuer}/oauth/revoke`);
    expect(a.response_types_supported).toEqual(["code"]);
  });
});

describe("authorization code flow with login.apiKey", () => {
  it("issues a JWT for the resource carrying the key's principal and at most its scopes, with iss in the redirect", async () => {
    const { tok, redirect, consentHtml } = await fullFlow(new Agent(), { scope: "tools:call admin" });
    expect(redirect.searchParams.get("iss")).toBe(t.issuer);
    expect(redirect.searchParams.get("state")).toBe("st-1");
    expect(consentHtml).toContain("test client");
    expect(consentHtml).toContain("127.0.0.1:9");
    expect(consentHtml).toContain(t.resource);
    expect(tok.scope).toBe("tools:call"); // the key has no `admin`
    expect(tok.refresh_token).toBeTruthy();
    const r = await t.as.verifier.verify(tok.access_token!);
    expect(r.ok && r.identity.principal).toBe(`key:${t.keyId}`);
    expect(r.ok && r.identity.scopes).toEqual(["tools:call"]);
    const [, payload] = tok.access_token!.split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString());
    expect(claims.aud).toBe(t.resource);
    expect(claims.iss).toBe(t.issuer);
  });

  it("remembers the consent in this browser: a second authorization goes straight back with a code", async () => {
    const agent = new Agent();
    const first = await fullFlow(agent);
    expect(first.consentHtml).toBeDefined();
    const second = await fullFlow(agent);
    expect(second.consentHtml).toBeUndefined();
  });

  it("a denied consent reaches the client as access_denied", async () => {
    const p = pkce();
    const { redirect } = await authorize(t, new Agent(), codeParams(p.challenge), { decision: "deny" });
    expect(redirect.origin + redirect.pathname).toBe(REDIRECT);
    expect(redirect.searchParams.get("error")).toBe("access_denied");
    expect(redirect.searchParams.get("code")).toBeNull();
  });

  it("a wrong API key gets the login page again (401) and never a code; the page does not echo the key", async () => {
    const p = pkce();
    const agent = new Agent();
    const wrong = `${t.key.slice(0, -3)}abc`;
    const start = await agent.follow(
      `${t.issuer}/oauth/authorize?${new URLSearchParams(codeParams(p.challenge))}`,
    );
    const html = await start.res.text();
    const action = /action="([^"]+)"/.exec(html)![1]!;
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)![1]!;
    const res = await agent.fetch(`${t.issuer}${action}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf, key: wrong }).toString(),
    });
    expect(res.status).toBe(401);
    const page = await res.text();
    expect(page).toContain("not accepted");
    expect(page).not.toContain(wrong);
    expect(page).not.toContain(wrong.slice(14));
    // Audited as a refused sign-in, without the key that was typed.
    const refused = audited.filter((e) => e.type === "oauth_login_refused");
    expect(refused.at(-1)).toMatchObject({ detail: { method: "apiKey", client: clientId } });
    expect(refused.at(-1)!.reason).toBeTruthy();
    expect(JSON.stringify(audited)).not.toContain(wrong.slice(14));
  });
});

describe("attacks refused at the authorization endpoint (400s)", () => {
  it("refuses a request without PKCE", async () => {
    const p = pkce();
    const { code_challenge: _c, code_challenge_method: _m, ...noPkce } = codeParams(p.challenge);
    const res = await new Agent().fetch(`${t.issuer}/oauth/authorize?${new URLSearchParams(noPkce)}`);
    const loc = new URL(res.headers.get("location")!);
    expect(loc.searchParams.get("error")).toBe("invalid_request");
    expect(loc.searchParams.get("error_description")).toMatch(/PKCE/);
  });

  it("refuses plain PKCE", async () => {
    const p = pkce();
    const res = await new Agent().fetch(
      `${t.issuer}/oauth/authorize?${new URLSearchParams(codeParams(p.verifier, { code_challenge_method: "plain" }))}`,
    );
    const loc = new URL(res.headers.get("location")!);
    expect(loc.searchParams.get("error")).toBe("invalid_request");
  });

  it("never redirects to an unregistered redirect URI", async () => {
    const p = pkce();
    const res = await new Agent().fetch(
      `${t.issuer}/oauth/authorize?${new URLSearchParams(codeParams(p.challenge, { redirect_uri: "https://evil.example/cb" }))}`,
    );
    expect(res.status).toBe(400);
    expect(res.headers.get("location")).toBeNull();
    expect(await res.text()).toContain("redirect_uri");
  });

  it("refuses a foreign resource and a missing one (RFC 8707 invalid_target)", async () => {
    const p = pkce();
    for (const extra of [{ resource: "https://other.example/mcp" }]) {
      const res = await new Agent().fetch(
        `${t.issuer}/oauth/authorize?${new URLSearchParams(codeParams(p.challenge, extra))}`,
      );
      expect(new URL(res.headers.get("location")!).searchParams.get("error")).toBe("invalid_target");
    }
    const { resource: _r, ...noResource } = codeParams(p.challenge);
    const agent = new Agent();
    const { redirect } = await authorize(t, agent, noResource);
    expect(redirect.searchParams.get("error")).toBe("invalid_target");
  });
});

describe("token endpoint attacks", () => {
  it("a reused code is refused and revokes what the first use issued", async () => {
    const first = await fullFlow();
    const again = await exchangeCode(t.issuer, {
      code: first.code,
      redirectUri: REDIRECT,
      clientId: clientId,
      verifier: first.verifier,
      resource: t.resource,
    });
    expect(again.status).toBe(400);
    expect(again.body.error).toBe("invalid_grant");
    // Audited: the first exchange issued, the replay refused; never the code or a token.
    expect(audited.filter((e) => e.type === "oauth_token_refused").at(-1)).toMatchObject({
      reason: "invalid_grant",
      detail: { client: clientId, grant: "authorization_code" },
    });
    expect(audited.some((e) => e.type === "oauth_token_issued" && e.actor === `key:${t.keyId}`)).toBe(true);
    const text = JSON.stringify(audited);
    for (const secret of [first.code, first.tok.access_token!.split(".")[2]!, first.tok.refresh_token!])
      expect(text).not.toContain(secret);
    const r = await t.as.verifier.verify(first.tok.access_token!);
    expect(r.ok).toBe(false);
    const refresh = await tokenRequest(t.issuer, {
      grant_type: "refresh_token",
      refresh_token: first.tok.refresh_token!,
      client_id: clientId,
    });
    expect(refresh.body.error).toBe("invalid_grant");
  });

  it("a wrong code_verifier is refused", async () => {
    const p = pkce();
    const { redirect } = await authorize(t, new Agent(), codeParams(p.challenge));
    const res = await exchangeCode(t.issuer, {
      code: redirect.searchParams.get("code")!,
      redirectUri: REDIRECT,
      clientId: clientId,
      verifier: pkce().verifier,
      resource: t.resource,
    });
    expect(res.body.error).toBe("invalid_grant");
  });

  it("rotates refresh tokens; reusing an old one revokes the family, access tokens included", async () => {
    const { tok } = await fullFlow();
    const next = await tokenRequest(t.issuer, {
      grant_type: "refresh_token",
      refresh_token: tok.refresh_token!,
      client_id: clientId,
      resource: t.resource,
    });
    expect(next.status).toBe(200);
    expect(next.body.refresh_token).toBeTruthy();
    expect(next.body.refresh_token).not.toBe(tok.refresh_token);
    expect((await t.as.verifier.verify(next.body.access_token!)).ok).toBe(true);
    const reuse = await tokenRequest(t.issuer, {
      grant_type: "refresh_token",
      refresh_token: tok.refresh_token!,
      client_id: clientId,
    });
    expect(reuse.body.error).toBe("invalid_grant");
    const successor = await tokenRequest(t.issuer, {
      grant_type: "refresh_token",
      refresh_token: next.body.refresh_token!,
      client_id: clientId,
    });
    expect(successor.body.error).toBe("invalid_grant");
    await sleep(1100); // the verifier re-asks about a grant at most once a second
    expect(await t.as.verifier.verify(next.body.access_token!)).toEqual({ ok: false, reason: "revoked" });
  });

  it("RFC 7009 revocation of the refresh token ends the grant's access tokens", async () => {
    const { tok } = await fullFlow();
    const res = await fetch(`${t.issuer}/oauth/revoke`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: tok.refresh_token!, client_id: clientId }).toString(),
    });
    expect(res.status).toBe(200);
    expect(await t.as.verifier.verify(tok.access_token!)).toEqual({ ok: false, reason: "revoked" });
    const refresh = await tokenRequest(t.issuer, {
      grant_type: "refresh_token",
      refresh_token: tok.refresh_token!,
      client_id: clientId,
    });
    expect(refresh.body.error).toBe("invalid_grant");
  });

  it("revoking the API key ends its tokens and its refresh tokens", async () => {
    const own = await startTestAuthServer();
    try {
      const cid = await registerClient(own.issuer, [REDIRECT]);
      const p = pkce();
      const { redirect } = await authorize(own, new Agent(), {
        ...codeParams(p.challenge),
        client_id: cid,
        resource: own.resource,
      });
      const tok = await exchangeCode(own.issuer, {
        code: redirect.searchParams.get("code")!,
        redirectUri: REDIRECT,
        clientId: cid,
        verifier: p.verifier,
        resource: own.resource,
      });
      expect((await own.as.verifier.verify(tok.body.access_token!)).ok).toBe(true);
      await own.keys.revoke(own.keyId);
      await sleep(1100);
      expect(await own.as.verifier.verify(tok.body.access_token!)).toEqual({ ok: false, reason: "revoked" });
      const refresh = await tokenRequest(own.issuer, {
        grant_type: "refresh_token",
        refresh_token: tok.body.refresh_token!,
        client_id: cid,
      });
      expect(refresh.body.error).toBe("invalid_grant");
    } finally {
      await own.close();
    }
  });
});

describe("consent CSRF and browser binding (403s)", () => {
  async function toConsent(agent: Agent) {
    const p = pkce();
    const start = await agent.follow(
      `${t.issuer}/oauth/authorize?${new URLSearchParams(codeParams(p.challenge))}`,
    );
    let html = await start.res.text();
    const login = /action="([^"]+)"/.exec(html)![1]!;
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)![1]!;
    const after = await agent.follow(`${t.issuer}${login}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf, key: t.key }).toString(),
    });
    html = await after.res.text();
    return {
      action: /action="([^"]+)"/.exec(html)![1]!,
      csrf: /name="csrf" value="([^"]+)"/.exec(html)![1]!,
    };
  }
  const post = (agent: Agent, action: string, body: Record<string, string>) =>
    agent.fetch(`${t.issuer}${action}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(body).toString(),
    });

  it("refuses an approval without the CSRF token, or with a forged one", async () => {
    const agent = new Agent();
    const c = await toConsent(agent);
    expect((await post(agent, c.action, { decision: "approve" })).status).toBe(403);
    expect(
      (await post(agent, c.action, { decision: "approve", csrf: `${c.csrf.slice(0, -2)}xx` })).status,
    ).toBe(403);
    // The real token still works afterwards: nothing was approved by the forgeries.
    const ok = await post(agent, c.action, { decision: "approve", csrf: c.csrf });
    expect(ok.status).toBe(303);
  });

  it("refuses an approval posted from another browser, even with the victim's CSRF token", async () => {
    const victim = new Agent();
    const c = await toConsent(victim);
    const attacker = new Agent();
    const res = await post(attacker, c.action, { decision: "approve", csrf: c.csrf });
    expect(res.status).toBe(400);
    expect(res.headers.get("location")).toBeNull();
  });

  it("serves the consent page unframeable, uncached and script-free", async () => {
    const agent = new Agent();
    const p = pkce();
    const start = await agent.follow(
      `${t.issuer}/oauth/authorize?${new URLSearchParams(codeParams(p.challenge))}`,
    );
    expect(start.res.headers.get("x-frame-options")).toBe("DENY");
    expect(start.res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(start.res.headers.get("cache-control")).toBe("no-store");
    expect(await start.res.text()).not.toContain("<script");
  });
});

describe("the API-key login page and the credential guard (429s)", () => {
  it("locks a source out after repeated wrong keys, even for the right key, with Retry-After", async () => {
    const guard = createGuard({ failures: 3, windowMs: 60_000, lockoutMs: 60_000 });
    const g = await startTestAuthServer({ guard });
    try {
      const cid = await registerClient(g.issuer, [REDIRECT]);
      const agent = new Agent();
      const p = pkce();
      const params = { ...codeParams(p.challenge), client_id: cid, resource: g.resource };
      const page = await agent.follow(`${g.issuer}/oauth/authorize?${new URLSearchParams(params)}`);
      const html = await page.res.text();
      const action = /action="([^"]+)"/.exec(html)![1]!;
      const csrf = /name="csrf" value="([^"]+)"/.exec(html)![1]!;
      const tryKey = (key: string) =>
        agent.fetch(`${g.issuer}${action}`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ csrf, key }).toString(),
        });
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++)
        statuses.push((await tryKey(`mcpg_wrongkey_${i}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx`)).status);
      const locked = await tryKey(g.key);
      expect(statuses).toEqual([401, 401, 401]);
      expect(locked.status).toBe(429);
      expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(0);
    } finally {
      await g.close();
      await guard.close();
    }
  });
});

describe("signing-key rotation (the shared key store)", () => {
  it("signs with the new key after a rotation, keeps verifying the old one, and publishes both", async () => {
    const signingKeys = createMemorySigningKeyStore();
    await signingKeys.init();
    const r = await startTestAuthServer({ signingKeys, keyRefreshMs: 100 });
    try {
      const cid = await registerClient(r.issuer, [REDIRECT]);
      const flow = async () => {
        const p = pkce();
        const { redirect } = await authorize(r, new Agent(), {
          ...codeParams(p.challenge),
          client_id: cid,
          resource: r.resource,
        });
        const tok = await exchangeCode(r.issuer, {
          code: redirect.searchParams.get("code")!,
          redirectUri: REDIRECT,
          clientId: cid,
          verifier: p.verifier,
          resource: r.resource,
        });
        return tok.body.access_token!;
      };
      const kidOf = (jwt: string) =>
        JSON.parse(Buffer.from(jwt.split(".")[0]!, "base64url").toString()).kid as string;
      const before = await flow();
      const rotated = await signingKeys.rotate({ overlapMs: 3_600_000 });
      await sleep(400);
      const after = await flow();
      expect(kidOf(before)).not.toBe(kidOf(after));
      expect(kidOf(after)).toBe(rotated.kid);
      expect((await r.as.verifier.verify(before)).ok).toBe(true);
      expect((await r.as.verifier.verify(after)).ok).toBe(true);
      const jwks = (await (await fetch(`${r.issuer}/oauth/jwks`)).json()) as {
        keys: Array<{ kid: string; d?: string }>;
      };
      expect(jwks.keys.map((k) => k.kid).sort()).toEqual([kidOf(before), kidOf(after)].sort());
      expect(jwks.keys.some((k) => k.d !== undefined)).toBe(false); // public keys only
    } finally {
      await r.close();
    }
  });
});
