import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { openSigningKeyStore } from "../../src/stores/signing-keys.js";
import { type AuthServer, startAuthServer } from "../authn/oidc-fixture.js";
import { connectClient, INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";
import {
  registerTokenExchange,
  TOKEN_EXCHANGE_GRANT,
  type TokenExchangeLog,
} from "../identity/token-exchange-grant.js";

/**
 * The leak test (test/e2e/observability.test.ts pattern) for identity: no caller credential, no
 * assertion, no exchanged token and no signing key in any log line, audit line or metric, whatever
 * happens (success, exchange refused, API key refused).
 */
const RESOURCE = "https://gw.example/notes/mcp";
let dir: string;
let as: AuthServer;
let log: TokenExchangeLog;
let upstream: RecordingUpstream;
let gw: TestGateway;
let apiKey: string;
let store: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcpgate-identity-leak-"));
  store = `sqlite:${join(dir, "keys.db")}`;
  const ks = await openKeyStore(store);
  apiKey = (await issueApiKey(ks, { name: "leak", scopes: ["tools:call"] })).key;
  await ks.close();
  as = await startAuthServer({ gatewayGrantTypes: [TOKEN_EXCHANGE_GRANT] });
  log = registerTokenExchange(as);
  upstream = await startRecordingUpstream();
  gw = await startTestGateway({
    auth: { apiKeys: { store }, jwt: { issuer: as.issuer, audience: RESOURCE } },
    identity: { keyStore: store },
    logging: { level: "debug", audit: join(dir, "audit.jsonl") },
    metrics: { listen: "127.0.0.1:0" },
    upstreams: [
      {
        name: "notes",
        path: "/notes/mcp",
        url: upstream.url,
        identity: { mode: "token-exchange", clientId: as.gateway.id, clientSecret: as.gateway.secret },
      },
      { name: "plain", path: "/plain/mcp", url: upstream.url, identity: { mode: "assertion" } },
    ],
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  await as?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("identity secrets never leak", () => {
  it("leaves no credential, assertion, exchanged token or signing key in logs, audit or metrics", async () => {
    const origin = new URL(gw.url).origin;
    const token = await as.token(RESOURCE);
    const refusedToken = await as.token(RESOURCE);
    for (const [path, cred] of [
      ["/notes/mcp", token],
      ["/notes/mcp", apiKey],
      ["/plain/mcp", apiKey],
    ] as const) {
      const { client } = await connectClient(`${origin}${path}`, cred);
      await client.callTool({ name: "echo", arguments: { message: "leak?" } });
      await client.close();
    }
    log.refuseNext = 1;
    expect(
      (await rawPost(`${origin}/notes/mcp`, INIT, { authorization: `Bearer ${refusedToken}` })).status,
    ).toBe(502);

    await gw.observability.observer.flush();
    const metrics = await (await fetch(gw.observability.metricsServer!.url)).text();
    const captured = [...gw.logs, readFileSync(join(dir, "audit.jsonl"), "utf8"), metrics].join("\n");
    // The capture is real: the mounts, the delegation and the refusal are in it.
    const audit = readFileSync(join(dir, "audit.jsonl"), "utf8");
    expect(audit).toMatch(/"type":"identity_exchanged".*"upstream":"notes".*"act":"mcp-gateway"/);
    expect(audit).toMatch(/"type":"identity_refused".*"reason":"exchange_failed".*"act":"mcp-gateway"/);
    expect(metrics).toMatch(/mcpgate_requests_total\{upstream="notes"/);
    expect(metrics).toMatch(/mcpgate_requests_total\{upstream="plain"/);

    const needles: Array<[string, string]> = [
      ["api key secret", apiKey.split("_").slice(2).join("_")],
      ["caller token signature", token.split(".")[2]!],
      ["refused token signature", refusedToken.split(".")[2]!],
      ["gateway client secret", as.gateway.secret],
    ];
    for (const s of upstream.seen) {
      const auth = String(s.headers.authorization ?? "");
      if (auth.startsWith("Bearer "))
        needles.push(["credential sent upstream", auth.slice(7).split(".")[2]!]);
    }
    const keys = await openSigningKeyStore(store);
    const { active } = await keys.current();
    await keys.close();
    needles.push(["signing key", String(active.privateJwk.d)]);
    expect(needles.length).toBeGreaterThan(5);
    const hits = needles.filter(([, v]) => captured.includes(v)).map(([n]) => n);
    expect(hits).toEqual([]);
  });
});
