import { afterAll, describe, expect, it } from "vitest";
import type { McpGateError } from "../../src/core/errors.js";
import { signingKeySeal } from "../../src/stores/signing-key-seal.js";
import { type OAuthTestPlace, oauthTestPlace } from "./backends.js";
import {
  Agent,
  authorize,
  codeRequest,
  pkce,
  register,
  startTestAuthServer,
  type TestAuthServer,
} from "./harness.js";

const REDIRECT = "http://127.0.0.1:9/callback";
const SECRET = "client-secrets-test-seal-0123456789abcdef";

/**
 * A confidential client registered by RFC 7591 authenticates with its `client_secret`; with
 * MCPGATE_SIGNING_KEY_SECRET set, the database holds it sealed (a reader of the table cannot
 * authenticate as the client), and the client still authenticates.
 */
describe("registered clients' secrets at rest", () => {
  const sealed = oauthTestPlace("client_sealed");
  const clear = oauthTestPlace("client_clear");
  const servers: TestAuthServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
    await sealed.cleanup();
    await clear.cleanup();
  });

  const errors: McpGateError[] = [];
  async function start(place: OAuthTestPlace, signingKeySecret?: string) {
    const store = place.store("sqlite");
    await store.init();
    const t = await startTestAuthServer({
      store,
      ...(signingKeySecret ? { signingKeySecret } : {}),
      onError: (err) => void errors.push(err),
    });
    servers.push(t);
    return t;
  }

  async function registerConfidential(issuer: string): Promise<{ id: string; secret: string }> {
    const body = await register(issuer, [REDIRECT], {
      client_name: "confidential",
      token_endpoint_auth_method: "client_secret_basic",
    });
    expect(body.client_secret).toBeTypeOf("string");
    return { id: body.client_id, secret: body.client_secret! };
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

  const storedClient = async (place: OAuthTestPlace, id: string) =>
    (await place.record("sqlite", "Client", id)) ?? "";

  it("stores the secret sealed, and the client still authenticates with it (and not with another)", async () => {
    const t = await start(sealed, SECRET);
    const client = await registerConfidential(t.issuer);
    const row = await storedClient(sealed, client.id);
    expect(row).not.toContain(client.secret);
    expect(JSON.parse(row).client_secret).toMatch(/^sealed:v1:/);
    expect(await tokenStatus(t, client)).toBe(200);
    expect(await tokenStatus(t, client, `${client.secret}x`)).toBe(401);
  });

  it("without MCPGATE_SIGNING_KEY_SECRET stores it as given, as before", async () => {
    const t = await start(clear);
    const client = await registerConfidential(t.issuer);
    expect(JSON.parse(await storedClient(clear, client.id)).client_secret).toBe(client.secret);
    expect(await tokenStatus(t, client)).toBe(200);
  });

  it("refuses a client whose secret does not open with a 500, and reports why without any secret", async () => {
    const t = await start(sealed, SECRET);
    const client = await registerConfidential(t.issuer);
    // The record as another instance, with another secret, would have sealed it.
    const other = signingKeySeal("another-sealing-secret-of-32-characters-x");
    const store = sealed.store("sqlite");
    await store.init();
    const record = (await store.find("Client", client.id))!;
    await store.upsert("Client", client.id, {
      ...record,
      client_secret: other.seal(`oauth-client:${client.id}`, client.secret),
    });
    await store.close();
    errors.length = 0;
    expect(await tokenStatus(t, client)).toBe(500);
    expect(errors.map((e) => e.message)).toContainEqual(
      expect.stringMatching(new RegExp(`the secret of client ${client.id} does not open`)),
    );
    for (const e of errors) expect(e.message).not.toContain(client.secret);
  });
});
