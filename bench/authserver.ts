/**
 * The gateway as authorization server (issue 16), measured:
 *  1. the cost per request of verifying the gateway's own access tokens, against the static-key
 *     check measured in the same run: the steady state (a token seen before: hash + cache + grant and
 *     key liveness from a one-second cache) and the first sight of a token (the ES256 signature check,
 *     bare jose with the same local key set);
 *  2. the time from a bare 401 to the first successful `tools/call` for the official SDK client
 *     (discovery, registration, code exchange, reconnect), with the browser part (login and consent
 *     pages, driven over HTTP here) timed separately and excluded.
 *
 * Run: npx tsx bench/authserver.ts   (bounded: a few seconds per part)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { createLocalJWKSet, jwtVerify } from "jose";
import { issueApiKey } from "../src/authn/key-lifecycle.js";
import { createStaticKeyVerifier } from "../src/authn/static-key.js";
import { runOAuthDemoClient } from "../src/cli/demo-oauth.js";
import { startDemoHttpServer } from "../src/cli/demo-server.js";
import { validateConfig } from "../src/config.js";
import { startGateway } from "../src/gateway/assembly/assemble.js";
import { openKeyStore } from "../src/stores/open-key-store.js";
import {
  Agent,
  authorize,
  exchangeCode,
  formOf,
  pkce,
  registerClient,
  startTestAuthServer,
} from "../test/authserver/harness.js";

const ROUNDS = 5;
const PER_ROUND = 4000;

async function perOpMicros(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < PER_ROUND; i++) await fn();
  return ((performance.now() - t) * 1000) / PER_ROUND;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function verificationCost(): Promise<void> {
  const t = await startTestAuthServer();
  try {
    const redirect = "http://127.0.0.1:9/cb";
    const clientId = await registerClient(t.issuer, [redirect]);
    const p = pkce();
    const { redirect: back } = await authorize(t, new Agent(), {
      client_id: clientId,
      response_type: "code",
      redirect_uri: redirect,
      code_challenge: p.challenge,
      code_challenge_method: "S256",
      scope: "tools:call",
      resource: t.resource,
    });
    const tok = await exchangeCode(t.issuer, {
      code: back.searchParams.get("code")!,
      redirectUri: redirect,
      clientId: clientId,
      verifier: p.verifier,
      resource: t.resource,
    });
    const token = tok.body.access_token!;
    const jwks = (await (await fetch(`${t.issuer}/oauth/jwks`)).json()) as { keys: never[] };
    const keySet = createLocalJWKSet(jwks);
    const staticKey = "static-key-for-the-benchmark-0123456789";
    const baseline = createStaticKeyVerifier({ key: staticKey });
    const own = t.as.verifier;
    if (!(await own.verify(token)).ok) throw new Error("token does not verify");
    const samples = { static: [] as number[], own: [] as number[], signature: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      samples.static.push(await perOpMicros(() => baseline.verify(staticKey)));
      samples.own.push(await perOpMicros(() => own.verify(token)));
      samples.signature.push(
        await perOpMicros(() => jwtVerify(token, keySet, { issuer: t.issuer, audience: t.resource })),
      );
    }
    const s = median(samples.static);
    const o = median(samples.own);
    const g = median(samples.signature);
    console.log("verification cost per request (median of %d rounds × %d calls)", ROUNDS, PER_ROUND);
    console.log(`  static key (baseline)                    ${s.toFixed(2)} µs`);
    console.log(
      `  gateway token, seen before (steady)      ${o.toFixed(2)} µs   ${(o / s).toFixed(2)}× static`,
    );
    console.log(
      `  gateway token, first sight (ES256 check) ${g.toFixed(2)} µs   ${(g / s).toFixed(2)}× static`,
    );
  } finally {
    await t.close();
  }
}

await verificationCost();

async function timeToFirstToolCall(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "mcpgate-bench-as-"));
  const store = `sqlite:${join(dir, "mcpgate.db")}`;
  const keys = await openKeyStore(store);
  const { key } = await issueApiKey(keys, { name: "bench", scopes: ["tools:call"] });
  await keys.close();
  const upstream = await startDemoHttpServer(0, "127.0.0.1");
  const gw = await startGateway({
    config: validateConfig(
      {
        listen: { host: "127.0.0.1", port: 0 },
        upstream: { url: upstream.url },
        auth: { apiKeys: { store } },
        authServer: { login: { apiKey: {} } },
        policy: { default: "deny", tools: [{ match: "*", scopes: ["tools:call"] }] },
        logging: { level: "silent" },
      },
      null,
    ),
  });
  // The person's part, over HTTP: follow to the login page, send the key, approve, deliver the code.
  const person = async (url: URL) => {
    const agent = new Agent();
    let step = await agent.follow(url.href);
    for (let i = 0; i < 3; i++) {
      const html = await step.res.text();
      const form = formOf(html);
      if (!form.action) break;
      const body: Record<string, string> = html.includes('name="key"')
        ? { csrf: form.csrf, key }
        : { csrf: form.csrf, decision: "approve" };
      step = await agent.follow(`${url.origin}${form.action}`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(body).toString(),
      });
      if (!step.url.startsWith(url.origin)) break;
    }
    await fetch(step.url); // the browser lands on the client's loopback callback
  };
  try {
    const oauth: number[] = [];
    const browser: number[] = [];
    const keyed: number[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await runOAuthDemoClient(gw.url, person);
      if (r.text !== "5") throw new Error(`unexpected tool result ${r.text}`);
      oauth.push(r.totalMs - r.browserMs);
      browser.push(r.browserMs);
      // Baseline in the same run: a client that sends the key itself, connect + the same tool call.
      const t = performance.now();
      const client = new Client({ name: "bench", version: "1" });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(gw.url), {
          requestInit: { headers: { authorization: `Bearer ${key}` } },
        }),
      );
      await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
      keyed.push(performance.now() - t);
      await client.close();
    }
    const o = median(oauth);
    const k = median(keyed);
    console.log("\nbare 401 → first successful tools/call, official SDK client (median of 7 fresh clients)");
    console.log(
      `  OAuth through the gateway's AS (DCR, PKCE, token, reconnect)  ${o.toFixed(1)} ms   ${(o / k).toFixed(1)}× the keyed client`,
    );
    console.log(
      `  browser part (login + consent pages over HTTP), excluded      ${median(browser).toFixed(1)} ms`,
    );
    console.log(`  baseline: client sending the API key itself (connect + call)   ${k.toFixed(1)} ms`);
  } finally {
    await gw.close();
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await timeToFirstToolCall();
