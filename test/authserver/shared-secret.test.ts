import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { sharedSecret } from "../../src/authserver/shared-secret.js";
import { McpGateError } from "../../src/core/errors.js";
import { createMemoryOAuthStore, type OAuthRecordStore } from "../../src/stores/oauth-records.js";
import { signingKeySeal } from "../../src/stores/signing-key-seal.js";
import { oauthTestPlace } from "./backends.js";
import {
  Agent,
  codeRequest,
  formOf,
  pkce,
  registerClient,
  startTestAuthServer,
  type TestAuthServer,
} from "./harness.js";

const REDIRECT = "http://127.0.0.1:9/callback";
/** Gateway instances starting at once on one database. */
const INSTANCES = 12;
const place = oauthTestPlace("oauth_secret");
const sealedPlace = oauthTestPlace("oauth_sealed");
afterAll(async () => {
  await place.cleanup();
  await sealedPlace.cleanup();
});

const memory = createMemoryOAuthStore(); // one process: every "instance" shares it
const backends: Array<[string, () => OAuthRecordStore]> = [
  ["memory", () => memory],
  ...(["sqlite", "postgres", "redis"] as const).map((b): [string, () => OAuthRecordStore] => [
    b,
    () => place.store(b),
  ]),
];

describe.each(backends)("the shared cookie keys, %s", (name, make) => {
  it("are one value for every instance creating them at the same moment", async () => {
    const stores = Array.from({ length: INSTANCES }, make);
    for (const s of new Set(stores)) await s.init();
    try {
      const id = `cookie-keys-${name}`;
      // Each instance makes its own candidate, some faster than others (as key generation and
      // network round trips are), so creations interleave with the other instances' writes.
      const results = await Promise.all(
        stores.map((store) =>
          sharedSecret(store, id, async () => {
            await new Promise((r) => setTimeout(r, Math.random() * 20));
            return { cookieKeys: [randomBytes(32).toString("base64url")] };
          }),
        ),
      );
      const values = new Set(results.map((r) => JSON.stringify(r)));
      expect(values.size).toBe(1);
      expect(await stores[0]!.find("Secret", id)).toEqual(results[0]);
      // A later instance reads the same keys and makes none.
      const later = await sharedSecret(stores[1]!, id, async () => {
        throw new Error("the keys exist: nothing to make");
      });
      expect(later).toEqual(results[0]);
    } finally {
      for (const s of new Set(stores)) await s.close();
    }
  });
});

const SECRET = "a-sealing-secret-of-at-least-32-characters";
const OTHER_SECRET = "another-sealing-secret-32-characters-long";
/** What the cookie-keys record is bound to when sealed (shared-secret.ts). */
const BOUND_TO = "oauth-record:Secret:cookie-keys";

/** The stored cookie-keys record as text, read behind the store's back, and the keys it seals. */
interface SealedBackend {
  name: string;
  open(): OAuthRecordStore;
  rawRecord(): Promise<string>;
}

const sealedBackends: SealedBackend[] = (["sqlite", "postgres"] as const).map((name) => ({
  name,
  open: () => sealedPlace.store(name),
  rawRecord: async () => (await sealedPlace.record(name, "Secret", "cookie-keys"))!,
}));

describe.each(sealedBackends)("the cookie keys sealed with MCPGATE_SIGNING_KEY_SECRET, $name", (backend) => {
  const servers: TestAuthServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
  });
  /** An authorization server on the shared store (the second one serves the first one's issuer). */
  const start = async (signingKeySecret: string | undefined, first?: TestAuthServer) => {
    const store = backend.open();
    await store.init();
    const t = await startTestAuthServer({
      store,
      ...(signingKeySecret ? { signingKeySecret } : {}),
      ...(first
        ? {
            issuer: first.issuer,
            resources: [first.resource],
            login: { apiKey: { verifier: first.loginVerifier, keys: first.keys } },
          }
        : {}),
    }).catch(async (err) => {
      await store.close();
      throw err;
    });
    servers.push(t);
    return t;
  };

  it("stores no key in clear, and two servers on the store read each other's cookies and forms", async () => {
    const a = await start(SECRET);
    const b = await start(SECRET, a);
    const raw = await backend.rawRecord();
    expect(raw).toMatch(/^\{"sealed": ?"sealed:v1:[\w-]+:[\w-]+"\}$/);
    const { cookieKeys } = JSON.parse(signingKeySeal(SECRET).open(BOUND_TO, JSON.parse(raw).sealed)) as {
      cookieKeys: string[];
    };
    expect(cookieKeys).toHaveLength(1);
    expect(raw).not.toContain(cookieKeys[0]);

    // A starts the flow and signs the interaction cookie; B shows the login page for it (reading
    // A's cookie) with a CSRF token that A accepts with the login.
    const clientId = await registerClient(a.issuer, [REDIRECT]);
    const agent = new Agent();
    const p = pkce();
    const begun = await agent.fetch(
      `${a.issuer}/oauth/authorize?${new URLSearchParams(codeRequest(clientId, p.challenge, a.resource, REDIRECT))}`,
    );
    const interaction = new URL(begun.headers.get("location")!, a.issuer).pathname;
    const page = await agent.fetch(`${b.issuer}${interaction}`);
    const html = await page.text();
    expect(page.status, html.slice(0, 200)).toBe(200);
    expect(html).toContain('name="key"');
    const form = formOf(html);
    const login = await agent.fetch(`${a.issuer}${form.action}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf: form.csrf, key: a.key }).toString(),
    });
    expect(login.status).toBe(303);
  });

  it("refuses to start with a wrong secret or none, saying so without any secret", async () => {
    const raw = await backend.rawRecord();
    const { cookieKeys } = JSON.parse(signingKeySeal(SECRET).open(BOUND_TO, JSON.parse(raw).sealed)) as {
      cookieKeys: string[];
    };
    for (const [secret, message] of [
      [OTHER_SECRET, /does not open: MCPGATE_SIGNING_KEY_SECRET is not the secret it was sealed with/],
      [undefined, /is sealed: set MCPGATE_SIGNING_KEY_SECRET to the secret it was sealed with/],
    ] as const) {
      const err = await start(secret).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(McpGateError);
      expect(err).toMatchObject({ code: "ERR_INVALID_OPTION", message });
      const text = `${(err as Error).message} ${String((err as Error).cause ?? "")}`;
      for (const s of [SECRET, OTHER_SECRET, cookieKeys[0]!]) expect(text).not.toContain(s);
    }
  });
});

describe("cookie keys stored in clear before sealing", () => {
  it("are sealed in place, unchanged, at the first start with the secret; without it they stay as they are", async () => {
    const store = place.store("sqlite");
    await store.init();
    try {
      const legacy = { cookieKeys: [randomBytes(32).toString("base64url")] };
      await store.upsert("Secret", "cookie-keys", legacy);
      const make = async () => {
        throw new Error("the keys exist: nothing to make");
      };
      // No secret: as before, the record is read and left in clear.
      expect(await sharedSecret(store, "cookie-keys", make)).toEqual(legacy);
      expect(await store.find("Secret", "cookie-keys")).toEqual(legacy);
      // With the secret: the same keys, now sealed at rest.
      expect(await sharedSecret(store, "cookie-keys", make, signingKeySeal(SECRET))).toEqual(legacy);
      const stored = (await store.find("Secret", "cookie-keys")) as { sealed: string };
      expect(JSON.stringify(stored)).not.toContain(legacy.cookieKeys[0]);
      expect(JSON.parse(signingKeySeal(SECRET).open(BOUND_TO, stored.sealed))).toEqual(legacy);
      expect(await sharedSecret(store, "cookie-keys", make, signingKeySeal(SECRET))).toEqual(legacy);
    } finally {
      await store.close();
    }
  });
});
