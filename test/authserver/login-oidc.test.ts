import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser } from "./browser.js";
import { exchangeCode, pkce, registerClient, startTestAuthServer, type TestAuthServer } from "./harness.js";
import { loginAtTestIdp, startTestIdp, type TestIdp } from "./idp-fixture.js";

const REDIRECT = "http://127.0.0.1:9/callback";

let t: TestAuthServer;
let idp: TestIdp | undefined;
let browser: Browser;
let clientId: string;

beforeAll(async () => {
  t = await startTestAuthServer(async (issuer) => {
    idp = await startTestIdp(`${issuer}/oauth/callback`);
    return {
      login: {
        oidc: {
          issuer: idp.issuer,
          clientId: idp.clientId,
          clientSecret: idp.clientSecret,
          scopes: ["openid", "email", "groups"],
          subjectClaim: "email",
          allowedEmailDomains: ["example.com"],
          allowedClaims: { groups: ["mcp-users"] },
        },
      },
    };
  });
  clientId = await registerClient(t.issuer, [REDIRECT], "Browser Test Client");
  browser = await launchBrowser();
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
  await idp?.close();
});

/** Open the authorization URL in a fresh browser; the client's redirect is caught, not loaded. */
async function start(page: Page, challenge: string): Promise<{ landed: Promise<URL> }> {
  let resolve: (u: URL) => void;
  const landed = new Promise<URL>((r) => {
    resolve = r;
  });
  await page.route("http://127.0.0.1:9/**", (route) => {
    resolve(new URL(route.request().url()));
    return route.fulfill({ status: 200, contentType: "text/plain", body: "client callback" });
  });
  const params = new URLSearchParams({
    client_id: clientId,
    response_type: "code",
    redirect_uri: REDIRECT,
    code_challenge: challenge,
    code_challenge_method: "S256",
    scope: "tools:call",
    resource: t.resource,
    state: "browser-state",
  });
  await page.goto(`${t.issuer}/oauth/authorize?${params}`);
  // Wrapped: an async function returning a bare promise would wait for it.
  return { landed };
}

describe("login.oidc through a real OpenID Provider, driven by headless Chromium", () => {
  it("logs alice in at the IdP, shows our consent page, and issues a token naming her", async () => {
    const context = await browser.newContext({
      viewport: { width: 390, height: 844 },
      javaScriptEnabled: false,
    });
    const page = await context.newPage();
    const p = pkce();
    const { landed } = await start(page, p.challenge);
    await loginAtTestIdp(page, idp!, "alice");
    await page.waitForSelector('button[value="approve"]');
    expect(page.url().startsWith(`${t.issuer}/oauth/interaction/`)).toBe(true);
    const text = await page.textContent("main");
    expect(text).toContain("Browser Test Client");
    expect(text).toContain("alice@example.com");
    expect(text).toContain("127.0.0.1:9");
    expect(text).toContain("tools:call");
    // The consent page on a phone-sized screen, without JavaScript: everything fits one column.
    const shot = await page.screenshot({ fullPage: true, path: "/tmp/mcpgate-consent-oidc.png" });
    expect(shot.subarray(1, 4).toString()).toBe("PNG");
    const approve = await page.locator('button[value="approve"]').boundingBox();
    expect(approve!.x + approve!.width).toBeLessThanOrEqual(390);
    expect(approve!.height).toBeGreaterThanOrEqual(40);
    await page.click('button[value="approve"]');
    const redirect = await landed;
    expect(redirect.searchParams.get("iss")).toBe(t.issuer);
    expect(redirect.searchParams.get("state")).toBe("browser-state");
    const tok = await exchangeCode(t.issuer, {
      code: redirect.searchParams.get("code")!,
      redirectUri: REDIRECT,
      clientId: clientId,
      verifier: p.verifier,
      resource: t.resource,
    });
    expect(tok.status).toBe(200);
    const r = await t.as.verifier.verify(tok.body.access_token!);
    expect(r.ok && r.identity.principal).toBe(`oauth:${t.issuer}#alice@example.com`);
    expect(r.ok && r.identity.scopes).toEqual(["tools:call"]);
    await context.close();
  }, 30_000);

  it("refuses a person outside the allowed email domain: access_denied reaches the client, no code", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const { landed } = await start(page, pkce().challenge);
    await loginAtTestIdp(page, idp!, "mallory");
    const redirect = await landed;
    expect(redirect.searchParams.get("error")).toBe("access_denied");
    expect(redirect.searchParams.get("code")).toBeNull();
    await context.close();
  }, 30_000);

  it("refuses an IdP answer replayed into another browser (state is bound to the interaction cookie)", async () => {
    const victim = await browser.newContext();
    const page = await victim.newPage();
    const toIdp: string[] = [];
    page.on("request", (r) => {
      if (r.url().startsWith(`${idp!.issuer}/auth`)) toIdp.push(r.url());
    });
    await start(page, pkce().challenge);
    await page.waitForURL((u) => u.href.startsWith(idp!.issuer));
    const state = new URL(toIdp[0]!).searchParams.get("state")!;
    expect(state.length).toBeGreaterThan(20);
    // The attacker's browser arrives at our callback with the victim's state: it has no interaction cookie.
    const res = await fetch(`${t.issuer}/oauth/callback?code=stolen&state=${state}`, { redirect: "manual" });
    expect(res.status).toBe(303);
    const next = await fetch(new URL(res.headers.get("location")!, t.issuer), { redirect: "manual" });
    expect(next.status).toBe(400);
    expect(await next.text()).toContain("another browser");
    const unknown = await fetch(`${t.issuer}/oauth/callback?code=x&state=forged`, { redirect: "manual" });
    expect(unknown.status).toBe(400);
    await victim.close();
  }, 30_000);
});
