import { createHash } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { createMemoryOAuthStore, type OAuthRecordStore } from "../../src/stores/oauth-records.js";
import { oauthTestPlace } from "./backends.js";
import { Agent, codeFlow, codeRequest, pkce, refresh, register, startTestAuthServer } from "./harness.js";

const REDIRECT = "http://127.0.0.1:9/callback";
const place = oauthTestPlace("oauth_ids");
afterAll(() => place.cleanup());

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/** A backend, and everything it holds as text (rows, keys and values), read behind the store's back. */
interface Backend {
  store: OAuthRecordStore;
  dump(): Promise<string>;
}

/** The memory store keeps its map private: record everything it is handed instead. */
function memoryBackend(): Backend {
  const inner = createMemoryOAuthStore();
  const written: string[] = [];
  const store: OAuthRecordStore = {
    ...inner,
    async upsert(model, id, payload, expiresInSec) {
      written.push(`${model} ${id} ${JSON.stringify(payload)}`);
      return inner.upsert(model, id, payload, expiresInSec);
    },
  };
  return { store, dump: async () => written.join("\n") };
}

/** A durable backend, read behind the store's back. */
const onPlace = (backend: "sqlite" | "postgres" | "redis") => (): Backend => ({
  store: place.store(backend),
  dump: () => place.records(backend),
});

/** A user agent that remembers every value the server ever set in a credential cookie. */
class RecordingAgent extends Agent {
  readonly credentials = new Set<string>();
  override async fetch(url: string, init: RequestInit = {}): Promise<Response> {
    const res = await super.fetch(url, init);
    for (const c of res.headers.getSetCookie()) {
      const m = /^(_session|_interaction|_interaction_resume)=([^;]+)/.exec(c);
      if (m?.[2]) this.credentials.add(m[2]);
    }
    return res;
  }
}

describe.each([
  ["memory", memoryBackend],
  ["sqlite", onPlace("sqlite")],
  ["postgres", onPlace("postgres")],
  ["redis", onPlace("redis")],
] as const)("credentials stored by digest only, %s", (_name, backend) => {
  /** A server on the backend, a registered client, and one code flow through it; closed after `run`. */
  async function afterOneFlow(
    run: (o: {
      b: ReturnType<typeof backend>;
      t: Awaited<ReturnType<typeof startTestAuthServer>>;
      client: Awaited<ReturnType<typeof register>>;
      agent: RecordingAgent;
      flow: Awaited<ReturnType<typeof codeFlow>>;
    }) => Promise<void>,
  ): Promise<void> {
    const b = backend();
    await b.store.init();
    const t = await startTestAuthServer({ store: b.store });
    try {
      const client = await register(t.issuer, [REDIRECT]);
      const agent = new RecordingAgent();
      await run({ b, t, client, agent, flow: await codeFlow(t, client.client_id, REDIRECT, agent) });
    } finally {
      await t.close();
      await b.store.close();
    }
  }

  it("keeps no refresh token, code, session or interaction id in clear, and the flow and refresh still work", async () => {
    await afterOneFlow(async ({ b, t, client, agent, flow }) => {
      const { code, token: tok } = flow;
      expect(tok.status).toBe(200);
      const next = await refresh(t.issuer, tok.body.refresh_token!, client.client_id);
      expect(next.status, JSON.stringify(next.body)).toBe(200);
      expect((await t.as.verifier.verify(next.body.access_token!)).ok).toBe(true);
      // RFC 7592 read with the registration access token, stored hashed too.
      const read = await fetch(client.registration_client_uri!, {
        headers: { authorization: `Bearer ${client.registration_access_token}` },
      });
      expect(read.status).toBe(200);

      // A second client's consent page: its interaction is pending (stored) and knows the session.
      const other = await register(t.issuer, [REDIRECT]);
      const pending = await agent.follow(
        `${t.issuer}/oauth/authorize?${new URLSearchParams(codeRequest(other.client_id, pkce().challenge, t.resource, REDIRECT))}`,
      );
      expect(await pending.res.text()).toContain('name="decision"');

      const secrets = [
        code,
        tok.body.refresh_token!,
        next.body.refresh_token!,
        client.registration_access_token,
        other.registration_access_token,
        ...agent.credentials,
      ];
      expect(agent.credentials.size).toBeGreaterThanOrEqual(4); // a session, and interactions
      const dump = await b.dump();
      expect(dump).toContain(client.client_id); // the dump is real: it holds the records
      expect(dump).toContain(sha256(next.body.refresh_token!));
      for (const secret of secrets) expect(dump).not.toContain(secret);
    });
  });

  it("still accepts a refresh token and a session stored by raw id before hashing, but no digest as a token", async () => {
    await afterOneFlow(async ({ b, t, client, agent, flow }) => {
      const { token: tok } = flow;
      const refreshToken = tok.body.refresh_token!;
      const sessionId = agent.cookies.get("_session")!;

      // What a database reader holds is no token.
      const stolen = await refresh(t.issuer, sha256(refreshToken), client.client_id);
      expect(stolen.body.error).toBe("invalid_grant");

      // Rewrite both records as the adapter stored them before hashing: raw id, `jti` in the payload.
      for (const [model, id] of [
        ["RefreshToken", refreshToken],
        ["Session", sessionId],
      ] as const) {
        const stored = await b.store.find(model, sha256(id));
        expect(stored, model).toBeDefined();
        expect(stored?.jti).toBeUndefined();
        await b.store.destroy(model, sha256(id));
        await b.store.upsert(model, id, { ...stored, jti: id }, 3600);
      }
      expect(await b.store.find("RefreshToken", sha256(refreshToken))).toBeUndefined();

      // The legacy session still signs the browser in: no login page, no consent page.
      const again = await codeFlow(t, client.client_id, REDIRECT, agent);
      expect(again.loginStatus).toBeUndefined();
      expect(again.consentHtml).toBeUndefined();
      expect(again.code).toBeTruthy();

      // The legacy refresh token still refreshes, once: its reuse is detected as before.
      const refreshed = await refresh(t.issuer, refreshToken, client.client_id);
      expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
      const reuse = await refresh(t.issuer, refreshToken, client.client_id);
      expect(reuse.body.error).toBe("invalid_grant");
    });
  });
});
