import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { createSqliteOAuthStore } from "../../src/stores/oauth-sqlite.js";
import { Agent, authorize, codeRequest, pkce, startTestAuthServer, type TestAuthServer } from "./harness.js";

const REDIRECT = "http://127.0.0.1:9/callback";
const SECRET = "client-secrets-test-seal-0123456789abcdef";

/**
 * A confidential client registered by RFC 7591 authenticates with its `client_secret`; with
 * MCPGATE_SIGNING_KEY_SECRET set, the database holds it sealed (a reader of the table cannot
 * authenticate as the client), and the client still authenticates.
 */
describe("registered clients' secrets at rest", () => {
  const dir = mkdtempSync(join(tmpdir(), "mcpgate-client-secrets-"));
  const servers: TestAuthServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(file: string, signingKeySecret?: string) {
    const store = createSqliteOAuthStore({ path: join(dir, file) });
    await store.init();
    const t = await startTestAuthServer({ store, ...(signingKeySecret ? { signingKeySecret } : {}) });
    servers.push(t);
    return t;
  }

  async function registerConfidential(issuer: string): Promise<{ id: string; secret: string }> {
    const res = await fetch(`${issuer}/oauth/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        redirect_uris: [REDIRECT],
        client_name: "confidential",
        token_endpoint_auth_method: "client_secret_basic",
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
      }),
    });
    const body = (await res.json()) as { client_id: string; client_secret: string };
    expect(res.status).toBe(201);
    expect(body.client_secret).toBeTypeOf("string");
    return { id: body.client_id, secret: body.client_secret };
  }

  /** The code flow, the code exchanged with the client's secret (HTTP Basic). */
  async function tokenStatus(
    t: TestAuthServer,
    client: { id: string; secret: string },
    secret = client.secret,
  ) {
    const p = pkce();
    const { redirect } = await authorize(
      t,
      new Agent(),
      codeRequest(client.id, p.challenge, t.resource, REDIRECT),
    );
    const res = await fetch(`${t.issuer}/oauth/token`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${Buffer.from(`${client.id}:${secret}`).toString("base64")}`,
      },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: redirect.searchParams.get("code") ?? "",
        redirect_uri: REDIRECT,
        code_verifier: p.verifier,
        resource: t.resource,
      }).toString(),
    });
    return res.status;
  }

  const storedClient = (file: string, id: string) => {
    const db = new Database(join(dir, file), { readonly: true });
    try {
      return (
        db.prepare("SELECT payload FROM oauth_records WHERE model = 'Client' AND id = ?").get(id) as {
          payload: string;
        }
      ).payload;
    } finally {
      db.close();
    }
  };

  it("stores the secret sealed, and the client still authenticates with it (and not with another)", async () => {
    const t = await start("sealed.db", SECRET);
    const client = await registerConfidential(t.issuer);
    const row = storedClient("sealed.db", client.id);
    expect(row).not.toContain(client.secret);
    expect(JSON.parse(row).client_secret).toMatch(/^sealed:v1:/);
    expect(await tokenStatus(t, client)).toBe(200);
    expect(await tokenStatus(t, client, `${client.secret}x`)).toBe(401);
  });

  it("without MCPGATE_SIGNING_KEY_SECRET stores it as given, as before", async () => {
    const t = await start("clear.db");
    const client = await registerConfidential(t.issuer);
    expect(JSON.parse(storedClient("clear.db", client.id)).client_secret).toBe(client.secret);
    expect(await tokenStatus(t, client)).toBe(200);
  });
});
