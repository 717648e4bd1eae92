import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectWithOAuth,
  MemoryOAuthClientProvider,
  startCallbackListener,
} from "../../src/cli/demo-oauth.js";
import { findFreePort } from "../../src/gateway/free-port.js";
import { launchBrowser } from "../authserver/browser.js";
import { type KeyLoginGateway, startKeyLoginGateway } from "../authserver/gateway-fixture.js";
import { tokenRequest } from "../authserver/harness.js";
import { loginAtTestIdp, startTestIdp, type TestIdp } from "../authserver/idp-fixture.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import type { RecordingUpstream } from "../helpers/upstream.js";

/**
 * The whole thing, as a user meets it: the official SDK client with an OAuthClientProvider, pointed at
 * a gateway with `authServer.login.apiKey`, gets a bare 401, discovers the gateway's own authorization
 * server through the PRM, registers (DCR), sends the person to the login page (headless Chromium
 * types the API key and approves the consent page), exchanges the code, and calls a tool. The
 * upstream never sees the token; the session is bound to the key's principal.
 */

let setup: KeyLoginGateway;
let dir: string;
let upstream: RecordingUpstream;
let gw: TestGateway;
let browser: Browser;
let key: string;
let keyId: string;
let otherKey: string;

beforeAll(async () => {
  setup = await startKeyLoginGateway(["person", "other"]);
  ({ dir, upstream, gw } = setup);
  key = setup.keys[0]!.key;
  keyId = setup.keys[0]!.id;
  otherKey = setup.keys[1]!.key;
  browser = await launchBrowser();
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await setup?.close();
});

/** The person's part, in a real browser: type the key, look at the consent page, approve. */
async function personApproves(url: URL, apiKey: string, shot?: string): Promise<void> {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(url.href);
  await page.fill('input[name="key"]', apiKey);
  await page.click('button[type="submit"]');
  await page.waitForSelector('button[value="approve"]');
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  const text = (await page.textContent("main")) ?? "";
  expect(text).toContain("SDK e2e client");
  expect(text).toContain("tools:call");
  await page.click('button[value="approve"]');
  await page.waitForURL((u) => u.pathname === "/callback");
  await context.close();
}

describe("the official SDK client through the gateway's own authorization server", () => {
  it("goes from a bare 401 to a successful tools/call, with the API key's principal on the session", async () => {
    const bare = await fetch(gw.url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(bare.status).toBe(401);
    const challenge = bare.headers.get("www-authenticate") ?? "";
    expect(challenge).toContain("resource_metadata=");
    const prmUrl = /resource_metadata="([^"]+)"/.exec(challenge)![1]!;
    const prm = (await (await fetch(prmUrl)).json()) as { authorization_servers: string[]; resource: string };
    const issuer = new URL(gw.url).origin;
    expect(prm.authorization_servers).toContain(issuer);

    const listener = await startCallbackListener();
    let authorizationUrl: URL | undefined;
    const provider = new MemoryOAuthClientProvider(
      listener.redirectUrl,
      (u) => {
        authorizationUrl = u;
      },
      { clientName: "SDK e2e client" },
    );
    try {
      const client = await connectWithOAuth(gw.url, provider, async () => {
        expect(authorizationUrl?.searchParams.get("code_challenge_method")).toBe("S256");
        expect(authorizationUrl?.searchParams.get("resource")).toBe(prm.resource);
        await personApproves(authorizationUrl!, key, "/tmp/mcpgate-consent-sdk.png");
        return listener.code;
      });
      const result = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
      expect(result.content).toEqual([{ type: "text", text: "5" }]);
      // A tool needing a scope the key lacks: a tool error, never a step-up loop (no consent can add it).
      const denied = await client.callTool({ name: "delete_note", arguments: { name: "welcome" } });
      expect(denied.isError).toBe(true);
      const tokens = provider.tokens()!;
      expect(tokens.refresh_token).toBeTruthy();
      // The upstream saw the call, never the gateway's token.
      const seenAuth = upstream.seen.map((s) => s.headers.authorization).filter(Boolean);
      expect(seenAuth.some((h) => String(h).includes(tokens.access_token))).toBe(false);
      // The session is bound to the key's principal: the same key's own bearer may use it, another key may not.
      const sid = (client.transport as { sessionId?: string }).sessionId!;
      const post = (bearer: string) =>
        fetch(gw.url, {
          method: "POST",
          headers: {
            authorization: `Bearer ${bearer}`,
            "mcp-session-id": sid,
            "mcp-protocol-version": "2025-06-18",
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
          },
          body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list" }),
        });
      expect((await post(key)).status).toBe(200);
      expect((await post(otherKey)).status).toBe(404);
      // A refreshed token keeps the session (binding is to the principal, not the token: DESIGN.md §1.3).
      const clientInfo = provider.clientInformation()!;
      const refreshed = await tokenRequest(new URL(gw.url).origin, {
        grant_type: "refresh_token",
        refresh_token: tokens.refresh_token!,
        client_id: clientInfo.client_id,
      });
      expect(refreshed.status).toBe(200);
      expect(refreshed.body.access_token).not.toBe(tokens.access_token);
      expect((await post(refreshed.body.access_token!)).status).toBe(200);
      provider.saveTokens(refreshed.body as never);
      await client.close();
    } finally {
      listener.close();
    }
    // Nothing secret in the gateway's logs: the key, the tokens, the code.
    const logs = gw.logs.join("\n");
    const tokens = provider.tokens()!;
    for (const secret of [key.slice(14), tokens.access_token.split(".")[2]!, tokens.refresh_token!]) {
      expect(logs.includes(secret)).toBe(false);
    }
    expect(keyId).toBeTruthy();

    // The audit trail (mirrored to the log) tells the story: registration, sign-in with the key
    // (its display prefix, never the key), consent, the code exchange and the refresh.
    const audit = gw.logs
      .map(
        (l) =>
          JSON.parse(l) as {
            msg?: string;
            audit?: { type: string; actor?: string; detail?: Record<string, unknown> };
          },
      )
      .filter((l) => l.msg === "audit" && l.audit?.type.startsWith("oauth_"))
      .map((l) => l.audit!);
    const client = provider.clientInformation()!.client_id;
    expect(audit.find((e) => e.type === "oauth_client_registered")?.detail).toMatchObject({ client });
    const login = audit.find((e) => e.type === "oauth_login");
    expect(login?.detail).toMatchObject({ method: "apiKey", account: `key:${keyId}`, client });
    expect(login?.actor).toMatch(/^mcpg_/);
    expect(key.startsWith(login!.actor!)).toBe(true);
    expect(audit.find((e) => e.type === "oauth_consent")?.detail).toMatchObject({
      decision: "approve",
      client,
    });
    const issued = audit.filter((e) => e.type === "oauth_token_issued");
    expect(issued.map((e) => e.detail?.grant)).toEqual(["authorization_code", "refresh_token"]);
    expect(issued.every((e) => e.actor === `key:${keyId}` && e.detail?.client === client)).toBe(true);
  }, 60_000);
});

describe("login.oidc at a real IdP, and a client known by its metadata document (CIMD), through the gateway", () => {
  let gw2: TestGateway;
  let idp: TestIdp;
  let docs: Server;
  let clientId: string;
  let redirectUrl: string;
  let listener: Awaited<ReturnType<typeof startCallbackListener>>;

  beforeAll(async () => {
    listener = await startCallbackListener();
    redirectUrl = listener.redirectUrl;
    // The client's metadata document, served on loopback (allowLoopbackMetadataDocuments: development).
    docs = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({
          client_id: clientId,
          client_name: "CIMD Desktop App",
          redirect_uris: [redirectUrl],
          grant_types: ["authorization_code", "refresh_token"],
          response_types: ["code"],
          token_endpoint_auth_method: "none",
        }),
      );
    });
    await new Promise<void>((r) => docs.listen(0, "127.0.0.1", r));
    clientId = `http://127.0.0.1:${(docs.address() as AddressInfo).port}/client.json`;
    const port = await findFreePort("127.0.0.1");
    idp = await startTestIdp(`http://127.0.0.1:${port}/oauth/callback`);
    gw2 = await startTestGateway({
      listen: { host: "127.0.0.1", port },
      upstream: { url: upstream.url },
      authServer: {
        login: {
          oidc: {
            issuer: idp.issuer,
            clientId: idp.clientId,
            clientSecret: idp.clientSecret,
            scopes: ["openid", "email", "groups"],
            subjectClaim: "email",
            allowedClaims: { groups: ["mcp-users"] },
          },
        },
        clients: { allowLoopbackMetadataDocuments: true, registration: false },
        store: `sqlite:${join(dir, "as2.db")}`,
      },
      policy: { default: "deny", tools: [{ match: "*", scopes: ["tools:call"] }] },
    });
  }, 30_000);

  afterAll(async () => {
    listener?.close();
    await gw2?.close();
    await idp?.close();
    docs?.closeAllConnections();
    await new Promise<void>((r) => (docs ? docs.close(() => r()) : r()));
  });

  it("signs alice in at the IdP and calls a tool as oauth:<gateway>#alice@example.com; no auth section needed", async () => {
    let authorizationUrl: URL | undefined;
    const provider = new MemoryOAuthClientProvider(
      redirectUrl,
      (u) => {
        authorizationUrl = u;
      },
      { clientId },
    );
    const client = await connectWithOAuth(gw2.url, provider, async () => {
      expect(authorizationUrl?.searchParams.get("client_id")).toBe(clientId);
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(authorizationUrl!.href);
      await loginAtTestIdp(page, idp, "alice");
      await page.waitForSelector('button[value="approve"]');
      const text = (await page.textContent("main")) ?? "";
      expect(text).toContain("CIMD Desktop App");
      expect(text).toContain("alice@example.com");
      await page.click('button[value="approve"]');
      await page.waitForURL((u) => u.pathname === "/callback");
      await context.close();
      return listener.code;
    });
    const result = await client.callTool({ name: "echo", arguments: { message: "hi" } });
    expect(result.content).toEqual([{ type: "text", text: "hi" }]);
    const token = provider.tokens()!.access_token;
    const verified = await gw2.gate.options.verifiers[0]!.verify(token);
    expect(verified.ok && verified.identity.principal).toBe(
      `oauth:${new URL(gw2.url).origin}#alice@example.com`,
    );
    await client.close();
    // The sign-in through the IdP is audited with the IdP's subject and the CIMD client's id.
    const logins = gw2.logs
      .map(
        (l) => JSON.parse(l) as { msg?: string; audit?: { type: string; actor?: string; detail?: object } },
      )
      .filter((l) => l.msg === "audit" && l.audit?.type === "oauth_login")
      .map((l) => l.audit!);
    expect(logins).toHaveLength(1);
    expect(logins[0]!.actor).toMatch(/^idp:/);
    expect(logins[0]!.detail).toEqual({ method: "oidc", client: clientId });
  }, 60_000);
});
