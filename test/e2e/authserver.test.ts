import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import {
  connectWithOAuth,
  MemoryOAuthClientProvider,
  startCallbackListener,
} from "../../src/cli/demo-oauth.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { launchBrowser } from "../authserver/browser.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * The whole thing, as a user meets it: the official SDK client with an OAuthClientProvider, pointed at
 * a gateway with `authServer.login.apiKey`, gets a bare 401, discovers the gateway's own authorization
 * server through the PRM, registers (DCR), sends the person to the login page (headless Chromium
 * types the API key and approves the consent page), exchanges the code, and calls a tool. The
 * upstream never sees the token; the session is bound to the key's principal.
 */

let dir: string;
let upstream: RecordingUpstream;
let gw: TestGateway;
let browser: Browser;
let key: string;
let keyId: string;
let otherKey: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcpgate-as-e2e-"));
  const store = `sqlite:${join(dir, "mcpgate.db")}`;
  const keys = await openKeyStore(store);
  ({
    key,
    record: { id: keyId },
  } = await issueApiKey(keys, { name: "person", scopes: ["tools:call"] }));
  ({ key: otherKey } = await issueApiKey(keys, { name: "other", scopes: ["tools:call"] }));
  await keys.close();
  upstream = await startRecordingUpstream();
  gw = await startTestGateway({
    upstream: { url: upstream.url },
    auth: { apiKeys: { store } },
    authServer: { login: { apiKey: {} } },
    policy: { default: "deny", tools: [{ match: "*", scopes: ["tools:call"] }] },
  });
  browser = await launchBrowser();
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
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
  }, 60_000);
});
