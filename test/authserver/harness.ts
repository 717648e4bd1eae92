import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { createApiKeyVerifier } from "../../src/authn/stored-key.js";
import {
  type AuthorizationServer,
  type AuthorizationServerOptions,
  createAuthorizationServer,
} from "../../src/authserver/index.js";
import type { KeyStore } from "../../src/stores/key-store.js";
import { createMemoryKeyStore } from "../../src/stores/memory-keys.js";
import { createMemoryOAuthStore, type OAuthRecordStore } from "../../src/stores/oauth-records.js";
import { createMemorySigningKeyStore } from "../../src/stores/signing-keys.js";

/** A standalone authorization server on 127.0.0.1:<random> (the gateway mounts the same handler). */
export interface TestAuthServer {
  issuer: string;
  resource: string;
  as: AuthorizationServer;
  keys: KeyStore;
  store: OAuthRecordStore;
  /** The stored-key verifier the login page uses. */
  loginVerifier: ReturnType<typeof createApiKeyVerifier>;
  /** A stored API key with scopes tools:call (login.apiKey). */
  key: string;
  keyId: string;
  close(): Promise<void>;
}

export async function startTestAuthServer(
  overrides:
    | Partial<AuthorizationServerOptions>
    | ((issuer: string) => Promise<Partial<AuthorizationServerOptions>>) = {},
  keyScopes = ["tools:call"],
): Promise<TestAuthServer> {
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;
  const resource = `${issuer}/mcp`;
  const keys = createMemoryKeyStore();
  await keys.init();
  const { key, record } = await issueApiKey(keys, { name: "login", scopes: keyScopes });
  const verifier = createApiKeyVerifier({ store: keys, cacheTtlMs: 0 });
  const over = typeof overrides === "function" ? await overrides(issuer) : overrides;
  // The store the server really uses: the one given, else a memory one.
  const store = over.store ?? createMemoryOAuthStore();
  const signingKeys = createMemorySigningKeyStore();
  await signingKeys.init();
  const as = await createAuthorizationServer({
    issuer,
    resources: [resource],
    scopes: ["tools:call", "admin"],
    login: { apiKey: { verifier, keys } },
    store,
    signingKeys,
    ...over,
  });
  server.on("request", (req, res) => {
    as.handle(req, res).then(
      (handled) => {
        if (!handled) res.writeHead(404).end();
      },
      () => {
        if (!res.headersSent) res.writeHead(500).end();
      },
    );
  });
  return {
    issuer,
    resource,
    as,
    keys,
    store,
    loginVerifier: verifier,
    key,
    keyId: record.id,
    async close() {
      await as.close();
      await verifier.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A PKCE pair (RFC 7636 S256). */
export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

/**
 * A browser-less user agent: a cookie jar and manual redirects, so a test can walk the
 * authorization flow step by step (and tamper with any step). The Chromium tests walk it for real.
 */
export class Agent {
  readonly cookies = new Map<string, string>();

  async fetch(url: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    const u = new URL(url);
    const jar = [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    if (jar && (u.hostname === "127.0.0.1" || u.hostname === "localhost")) headers.set("cookie", jar);
    const res = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const c of res.headers.getSetCookie()) {
      const [pair = ""] = c.split(";");
      const i = pair.indexOf("=");
      const name = pair.slice(0, i);
      const value = pair.slice(i + 1);
      if (/expires=Thu, 01 Jan 1970/i.test(c) || value === "") this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }

  /** Follow redirects on the server's origin; stop at the first response elsewhere or not a redirect. */
  async follow(
    url: string,
    init: RequestInit = {},
    origin = new URL(url).origin,
  ): Promise<{ res: Response; url: string }> {
    let res = await this.fetch(url, init);
    let current = url;
    for (let i = 0; i < 10 && res.status >= 300 && res.status < 400; i++) {
      const next = new URL(res.headers.get("location")!, current).href;
      if (!next.startsWith(origin)) return { res, url: next };
      current = next;
      res = await this.fetch(next);
    }
    return { res, url: current };
  }
}

/** The value of a hidden form field and the form's action, from a page. */
export function formOf(html: string): { action: string; csrf: string } {
  const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1] ?? "";
  const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? "";
  return { action: action.replace(/&#(\d+);/g, (_m, n) => String.fromCharCode(Number(n))), csrf };
}

/**
 * RFC 7591 registration of a public client with `redirectUris` (`metadata` adds to or replaces its
 * fields); the whole answer, which throws unless a client_id comes back.
 *
 * @example const { client_id, client_secret } = await register(issuer, [REDIRECT], { token_endpoint_auth_method: "client_secret_basic" });
 */
export async function register(
  issuer: string,
  redirectUris: string[],
  metadata: Record<string, unknown> = {},
): Promise<Record<string, string> & { client_id: string }> {
  const res = await fetch(`${issuer}/oauth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      redirect_uris: redirectUris,
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      ...metadata,
    }),
  });
  const body = (await res.json().catch(() => ({}))) as Record<string, string>;
  if (res.status !== 201 || !body.client_id)
    throw new Error(`registration failed: ${res.status} ${body.error} ${body.error_description}`);
  return body as Record<string, string> & { client_id: string };
}

/** Register a public client by RFC 7591 DCR; its client_id. */
export async function registerClient(
  issuer: string,
  redirectUris: string[],
  name = "test client",
): Promise<string> {
  return (await register(issuer, redirectUris, { client_name: name })).client_id;
}

/**
 * Walk the whole code flow with an API-key login and an approved consent; returns the code and the
 * final redirect. Each step asserts nothing: tests check what they need.
 */
export async function authorize(
  t: Pick<TestAuthServer, "issuer" | "key">,
  agent: Agent,
  params: Record<string, string>,
  options: { key?: string; decision?: "approve" | "deny" } = {},
): Promise<{ redirect: URL; loginStatus?: number; consentHtml?: string }> {
  const url = `${t.issuer}/oauth/authorize?${new URLSearchParams(params)}`;
  let step = await agent.follow(url);
  let loginStatus: number | undefined;
  let html = await step.res.text();
  if (html.includes('name="key"')) {
    const form = formOf(html);
    step = await agent.follow(`${t.issuer}${form.action}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf: form.csrf, key: options.key ?? t.key }).toString(),
    });
    loginStatus = step.res.status;
    html = step.res.status < 300 ? await step.res.text() : "";
    if (html.includes('name="key"')) return { redirect: new URL("about:blank"), loginStatus };
  }
  let consentHtml: string | undefined;
  if (html.includes('name="decision"')) {
    consentHtml = html;
    const form = formOf(html);
    step = await agent.follow(`${t.issuer}${form.action}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf: form.csrf, decision: options.decision ?? "approve" }).toString(),
    });
  }
  const out: { redirect: URL; loginStatus?: number; consentHtml?: string } = { redirect: new URL(step.url) };
  if (loginStatus !== undefined) out.loginStatus = loginStatus;
  if (consentHtml !== undefined) out.consentHtml = consentHtml;
  return out;
}

/** Exchange a code (or refresh token) at the token endpoint. */
export async function tokenRequest(
  issuer: string,
  params: Record<string, string>,
): Promise<{ status: number; body: Record<string, string> }> {
  const res = await fetch(`${issuer}/oauth/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(params).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, string> };
}

/** Exchange an authorization code (with its PKCE verifier and RFC 8707 resource) at the token endpoint. */
export function exchangeCode(
  issuer: string,
  c: { code: string; redirectUri: string; clientId: string; verifier: string; resource: string },
): Promise<{ status: number; body: Record<string, string> }> {
  return tokenRequest(issuer, {
    grant_type: "authorization_code",
    code: c.code,
    redirect_uri: c.redirectUri,
    client_id: c.clientId,
    code_verifier: c.verifier,
    resource: c.resource,
  });
}

/**
 * The authorization request of a public client with PKCE S256 and an RFC 8707 resource, scope
 * `tools:call`, redirecting to `redirectUri`.
 *
 * @example const params = codeRequest(clientId, pkce().challenge, resource, REDIRECT);
 */
export function codeRequest(
  clientId: string,
  challenge: string,
  resource: string,
  redirectUri: string,
): Record<string, string> {
  return {
    client_id: clientId,
    response_type: "code",
    redirect_uri: redirectUri,
    code_challenge: challenge,
    code_challenge_method: "S256",
    scope: "tools:call",
    resource,
  };
}

/**
 * The code flow of `clientId` for `t.resource`: PKCE, the API key's login and consent approved (what
 * `agent` remembers is reused: a signed-in browser skips them), the code exchanged.
 *
 * @example const { token } = await codeFlow(t, clientId, REDIRECT); token.body.access_token
 */
export async function codeFlow(
  t: { issuer: string; key: string; resource: string },
  clientId: string,
  redirectUri: string,
  agent: Agent = new Agent(),
): Promise<{
  code: string;
  token: { status: number; body: Record<string, string> };
  loginStatus?: number;
  consentHtml?: string;
}> {
  const p = pkce();
  const { redirect, ...seen } = await authorize(
    t,
    agent,
    codeRequest(clientId, p.challenge, t.resource, redirectUri),
  );
  const code = redirect.searchParams.get("code") ?? "";
  const token = await exchangeCode(t.issuer, {
    code,
    redirectUri,
    clientId,
    verifier: p.verifier,
    resource: t.resource,
  });
  return { code, token, ...seen };
}

/** A refresh-token grant for a public client. */
export function refresh(
  issuer: string,
  refreshToken: string,
  clientId: string,
): Promise<{ status: number; body: Record<string, string> }> {
  return tokenRequest(issuer, {
    grant_type: "refresh_token",
    refresh_token: refreshToken,
    client_id: clientId,
  });
}

/**
 * A token for `resource` from the authorization server at `issuer`, through the whole flow: a new
 * client registered, the API key's login, consent approved, the code exchanged.
 *
 * @example const { status, body } = await tokenThroughFlow(issuer, key, `${issuer}/mcp`, REDIRECT);
 */
export async function tokenThroughFlow(
  issuer: string,
  key: string,
  resource: string,
  redirectUri: string,
): Promise<{ status: number; body: Record<string, string> }> {
  const clientId = await registerClient(issuer, [redirectUri]);
  return (await codeFlow({ issuer, key, resource }, clientId, redirectUri)).token;
}
