import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGuard } from "../../src/observe/guard.js";
import { createMemoryOAuthStore } from "../../src/stores/oauth-records.js";
import { createRedisStateStore } from "../../src/stores/redis-state.js";
import {
  Agent,
  authorize,
  codeFlow,
  exchangeCode,
  pkce,
  refresh,
  registerClient,
  startTestAuthServer,
  type TestAuthServer,
  tokenRequest,
} from "./harness.js";

const REDIRECT = "http://127.0.0.1:9/callback";

/** A loopback web server serving Client ID Metadata Documents, good and hostile. */
async function startDocumentServer(): Promise<{ base: string; hits: string[]; close(): Promise<void> }> {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    hits.push(path);
    const self = `${base}${path}`;
    const doc = (extra: Record<string, unknown> = {}) =>
      JSON.stringify({
        client_id: self,
        client_name: "CIMD Test App",
        redirect_uris: [REDIRECT],
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        token_endpoint_auth_method: "none",
        ...extra,
      });
    const json = (body: string) =>
      res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=60" }).end(body);
    if (path === "/good.json") return json(doc());
    if (path === "/mismatch.json") return json(doc({ client_id: `${base}/good.json` }));
    if (path === "/secret.json") return json(doc({ client_secret: "s3cret-s3cret-s3cret" }));
    if (path === "/evil-redirect.json") return json(doc({ redirect_uris: ["http://evil.example/cb"] }));
    if (path === "/big.json") return json(doc({ client_name: "x".repeat(64 * 1024) }));
    if (path === "/slow.json") {
      // Head at once, body never: the fetch must give up on its own.
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"client_id":');
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    hits,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function params(clientId: string, resource: string, challenge: string): Record<string, string> {
  return {
    client_id: clientId,
    response_type: "code",
    redirect_uri: REDIRECT,
    code_challenge: challenge,
    code_challenge_method: "S256",
    scope: "tools:call",
    resource,
    state: "s",
  };
}

describe("Client ID Metadata Documents (loopback allowed for development)", () => {
  let t: TestAuthServer;
  let docs: Awaited<ReturnType<typeof startDocumentServer>>;
  beforeAll(async () => {
    docs = await startDocumentServer();
    t = await startTestAuthServer({ clients: { allowLoopbackMetadataDocuments: true } });
  });
  afterAll(async () => {
    await t.close();
    await docs.close();
  });

  it("runs the whole flow for a client known only by its document URL, and shows its name on the consent page", async () => {
    const clientId = `${docs.base}/good.json`;
    const p = pkce();
    const { redirect, consentHtml } = await authorize(
      t,
      new Agent(),
      params(clientId, t.resource, p.challenge),
    );
    expect(consentHtml).toContain("CIMD Test App");
    const tok = await exchangeCode(t.issuer, {
      code: redirect.searchParams.get("code")!,
      redirectUri: REDIRECT,
      clientId: clientId,
      verifier: p.verifier,
      resource: t.resource,
    });
    expect(tok.status).toBe(200);
    const r = await t.as.verifier.verify(tok.body.access_token!);
    expect(r.ok && r.identity.clientId).toBe(clientId);
  });

  it("caches a document by its Cache-Control max-age: a second authorization does not fetch it again", async () => {
    const clientId = `${docs.base}/good.json`;
    const fetches = () => docs.hits.filter((h) => h === "/good.json").length;
    await new Agent().fetch(
      `${t.issuer}/oauth/authorize?${new URLSearchParams(params(clientId, t.resource, pkce().challenge))}`,
    );
    const before = fetches();
    expect(before).toBeGreaterThanOrEqual(1);
    await new Agent().fetch(
      `${t.issuer}/oauth/authorize?${new URLSearchParams(params(clientId, t.resource, pkce().challenge))}`,
    );
    expect(fetches()).toBe(before);
  });

  for (const [name, path] of [
    ["a document whose client_id is not its own URL", "/mismatch.json"],
    ["a document carrying a client secret", "/secret.json"],
    ["a document with a non-loopback http redirect URI", "/evil-redirect.json"],
    ["an oversized document", "/big.json"],
    ["a document that never finishes (slow)", "/slow.json"],
    ["a missing document", "/absent.json"],
  ] as const) {
    it(`refuses ${name}: invalid_client, no redirect to the client`, async () => {
      const p = pkce();
      const started = Date.now();
      const res = await new Agent().fetch(
        `${t.issuer}/oauth/authorize?${new URLSearchParams(params(`${docs.base}${path}`, t.resource, p.challenge))}`,
      );
      expect(res.status).toBe(400);
      expect(res.headers.get("location")).toBeNull();
      expect(await res.text()).toContain("invalid_client");
      expect(Date.now() - started).toBeLessThan(4000); // the fetch is bounded in time (2.5 s)
    });
  }
});

describe("Client ID Metadata Documents: SSRF protection (default settings)", () => {
  let t: TestAuthServer;
  let docs: Awaited<ReturnType<typeof startDocumentServer>>;
  beforeAll(async () => {
    docs = await startDocumentServer();
    t = await startTestAuthServer();
  });
  afterAll(async () => {
    await t.close();
    await docs.close();
  });

  for (const [label, url] of [
    ["http on loopback (not a CIMD URL without the development flag)", () => `${docs.base}/good.json`],
    ["https on 127.0.0.1", () => `${docs.base.replace("http:", "https:")}/good.json`],
    ["a host name resolving to loopback", () => `https://localhost:${new URL(docs.base).port}/good.json`],
    ["a private address", () => "https://10.0.0.1/client.json"],
    ["the link-local cloud metadata address", () => "https://169.254.169.254/latest/meta-data.json"],
    ["IPv6 loopback", () => "https://[::1]/client.json"],
  ] as const) {
    it(`never fetches a document at ${label}`, async () => {
      const before = docs.hits.length;
      const p = pkce();
      const started = Date.now();
      const res = await new Agent().fetch(
        `${t.issuer}/oauth/authorize?${new URLSearchParams(params(url(), t.resource, p.challenge))}`,
      );
      expect(res.status).toBe(400);
      expect(await res.text()).toContain("invalid_client");
      expect(docs.hits.length).toBe(before);
      expect(Date.now() - started).toBeLessThan(2000); // refused before any connection attempt
    });
  }
});

describe("dynamic client registration (RFC 7591)", () => {
  let t: TestAuthServer;
  beforeAll(async () => {
    t = await startTestAuthServer();
  });
  afterAll(async () => {
    await t.close();
  });

  it("accepts https and loopback redirect URIs, refuses anything else", async () => {
    expect(
      await registerClient(t.issuer, ["https://app.example/cb", "http://localhost:7777/cb"]),
    ).toBeTruthy();
    for (const bad of [["http://app.example/cb"], ["myapp://cb"], ["https://app.example/cb#frag"], []]) {
      const res = await fetch(`${t.issuer}/oauth/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ redirect_uris: bad, token_endpoint_auth_method: "none" }),
      });
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect(((await res.json()) as { error: string }).error).toMatch(
        /invalid_redirect_uri|invalid_client_metadata/,
      );
    }
  });

  it("shows a hostile client name as text on the consent page, never as markup", async () => {
    const name = `<img src=x onerror="alert(1)"><script>alert(2)</script>`;
    const cid = await registerClient(t.issuer, [REDIRECT], name);
    const p = pkce();
    const { consentHtml } = await authorize(t, new Agent(), params(cid, t.resource, p.challenge));
    expect(consentHtml).toBeDefined();
    expect(consentHtml).not.toContain("<script>alert");
    expect(consentHtml).not.toContain("<img src=x");
    expect(consentHtml).toContain("&#60;script&#62;alert(2)");
  });

  it("is bounded: at most maxRegistered clients (503), at most `limit` attempts per address per window (429)", async () => {
    const limited = await startTestAuthServer({
      clients: { registrationRateLimit: { limit: 3, windowMs: 60_000 } },
    });
    const statuses: number[] = [];
    try {
      // Every spelling the provider's router takes for the endpoint counts against the same limit,
      // sent as a raw request target (fetch would drop a fragment before sending it).
      const post = (path: string) =>
        new Promise<{ status: number; retryAfter: string | undefined }>((resolve, reject) => {
          const req = httpRequest(
            `${limited.issuer}/`,
            { method: "POST", path, headers: { "content-type": "application/json" } },
            (res) => {
              res.resume();
              resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"] as string });
            },
          );
          req.on("error", reject);
          req.end(JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" }));
        });
      for (const path of ["/oauth/register", "/oauth/Register", "/oauth/register/", "/OAUTH/register"])
        statuses.push((await post(path)).status);
      // A fragment, or a query, in the request target: the router matches the path before them.
      for (const path of ["/oauth/register#x", "/oauth/register?x=1", "/oauth/register/#x"]) {
        const again = await post(path);
        statuses.push(again.status);
        expect(again.retryAfter).toBe("60");
      }
    } finally {
      await limited.close();
    }
    // "/OAUTH/…" is not under /oauth/ for the gateway: never handed to the provider (404).
    expect(statuses).toEqual([201, 201, 201, 404, 429, 429, 429]);
    const fresh = await startTestAuthServer({ clients: { maxRegistered: 2 } });
    try {
      await registerClient(fresh.issuer, [REDIRECT]);
      await registerClient(fresh.issuer, [REDIRECT]);
      await expect(registerClient(fresh.issuer, [REDIRECT])).rejects.toThrow(/503/);
    } finally {
      await fresh.close();
    }
  });

  it("counts an IPv6 caller by its /64 and an IPv4-mapped one as IPv4 (behind a trusted proxy)", async () => {
    const limited = await startTestAuthServer({
      clients: { registrationRateLimit: { limit: 1, windowMs: 60_000 } },
      guard: createGuard({ trustProxy: true }),
    });
    const from = async (address: string) =>
      (
        await fetch(`${limited.issuer}/oauth/register`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-forwarded-for": address },
          body: JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" }),
        })
      ).status;
    try {
      expect(await from("2001:db8:1:2::a")).toBe(201);
      expect(await from("2001:db8:1:2:ffff::b")).toBe(429); // same /64: the budget is spent
      expect(await from("2001:db8:1:3::a")).toBe(201);
      expect(await from("192.0.2.1")).toBe(201);
      expect(await from("::ffff:192.0.2.1")).toBe(429);
    } finally {
      await limited.close();
    }
  });

  it("refuses registration (503) while the shared budget store is unreachable", async () => {
    const down = createRedisStateStore({ url: "redis://127.0.0.1:1", connectTimeoutMs: 200 });
    const t2 = await startTestAuthServer({
      clients: { registrationRateLimit: { limit: 10, windowMs: 60_000, state: down } },
    });
    try {
      await expect(registerClient(t2.issuer, [REDIRECT])).rejects.toThrow(/503 temporarily_unavailable/);
    } finally {
      await t2.close();
      await down.close();
    }
  });

  it("can be switched off: no endpoint, none advertised", async () => {
    const off = await startTestAuthServer({ clients: { registration: false } });
    try {
      const meta = (await (
        await fetch(`${off.issuer}/.well-known/oauth-authorization-server`)
      ).json()) as Record<string, unknown>;
      expect(meta.registration_endpoint).toBeUndefined();
      await expect(registerClient(off.issuer, [REDIRECT])).rejects.toThrow(/404/);
    } finally {
      await off.close();
    }
  });
});

describe("registered clients expire when unused (clients.unusedClientTtl)", () => {
  const DAY = 86_400_000;
  const TTL_SEC = 30 * 86_400;
  // The store's clock: records (clients among them) expire by it; the provider keeps real time.
  let now = Date.now();
  let t: TestAuthServer;
  const store = createMemoryOAuthStore({ now: () => now });
  beforeAll(async () => {
    // A client registered before clients expired (an upgrade): stored with no expiry at all.
    await store.upsert("Client", "registered-before-expiry", {
      client_id: "registered-before-expiry",
      redirect_uris: [REDIRECT],
      token_endpoint_auth_method: "none",
    });
    t = await startTestAuthServer({ store, clients: { maxRegistered: 3, unusedClientTtlSec: TTL_SEC } });
  });
  afterAll(async () => {
    await t.close();
  });

  /** The provider's answer to an authorization request: invalid_client once a client is gone. */
  const authorizationAnswer = async (clientId: string) => {
    const res = await new Agent().fetch(
      `${t.issuer}/oauth/authorize?${new URLSearchParams(params(clientId, t.resource, pkce().challenge))}`,
    );
    return { status: res.status, invalidClient: (await res.text()).includes("invalid_client") };
  };
  const register = () =>
    fetch(`${t.issuer}/oauth/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" }),
    });

  it("keeps a client issued tokens, forgets unused and merely-asked-about ones, and frees the cap", async () => {
    const used = await registerClient(t.issuer, [REDIRECT]);
    const unused = await registerClient(t.issuer, [REDIRECT]);
    // The cap (3, the client from before the upgrade included) is full: 503 for everyone.
    expect((await register()).status).toBe(503);
    // Each registration also stored its registration access token (RFC 7592).
    expect(await store.count("RegistrationAccessToken")).toBe(2);

    now += 20 * DAY;
    // An authorization request alone proves nothing (anyone can send one): it extends nothing.
    expect(await authorizationAnswer(unused)).toEqual({ status: 303, invalidClient: false });
    const { token: tok } = await codeFlow(t, used, REDIRECT);
    expect(tok.status).toBe(200);

    // One second before 30 days after registration: both still there, the cap still full.
    now += 10 * DAY - 1000;
    expect(await authorizationAnswer(unused)).toEqual({ status: 303, invalidClient: false });
    expect((await register()).status).toBe(503);
    // The exact second: the unused clients are gone (register again), the used one is kept.
    now += 1000;
    expect(await authorizationAnswer(unused)).toEqual({ status: 400, invalidClient: true });
    expect(await authorizationAnswer("registered-before-expiry")).toEqual({
      status: 400,
      invalidClient: true,
    });
    const refused = await tokenRequest(t.issuer, {
      grant_type: "authorization_code",
      code: "x",
      redirect_uri: REDIRECT,
      client_id: unused,
      code_verifier: pkce().verifier,
    });
    expect(refused.body.error).toBe("invalid_client");
    expect(await authorizationAnswer(used)).toEqual({ status: 303, invalidClient: false });
    expect(await store.count("Client")).toBe(1);
    // Registration access tokens live no longer than an unused client: none is left for ever.
    expect(await store.count("RegistrationAccessToken")).toBe(0);

    // A refresh is a use too: it carries the client past 30 days after its code.
    now += 15 * DAY;
    const refreshed = await refresh(t.issuer, tok.body.refresh_token!, used);
    expect(refreshed.status).toBe(200);
    now += 25 * DAY;
    expect(await authorizationAnswer(used)).toEqual({ status: 303, invalidClient: false });

    // The expired ones no longer count: registration is open again.
    expect((await register()).status).toBe(201);
    now += 6 * DAY;
    expect(await authorizationAnswer(used)).toEqual({ status: 400, invalidClient: true });
  });
});
