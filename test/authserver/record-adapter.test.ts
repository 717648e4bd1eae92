import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createPostgresOAuthStore } from "../../src/stores/oauth-postgres.js";
import { createMemoryOAuthStore, type OAuthRecordStore } from "../../src/stores/oauth-records.js";
import { createRedisOAuthStore } from "../../src/stores/oauth-redis.js";
import { createSqliteOAuthStore } from "../../src/stores/oauth-sqlite.js";
import { Agent, authorize, exchangeCode, pkce, startTestAuthServer, tokenRequest } from "./harness.js";

const PG_URL = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const REDIRECT = "http://127.0.0.1:9/callback";
const run = randomBytes(4).toString("hex");
const dir = mkdtempSync(join(tmpdir(), "mcpgate-oauth-ids-"));
const schema = `oauth_ids_${run}`;
const prefix = `mcpgate-test-ids-${run}:`;

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

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

function sqliteBackend(): Backend {
  const path = join(dir, "oauth.db");
  return {
    store: createSqliteOAuthStore({ path }),
    async dump() {
      const db = new Database(path, { readonly: true });
      try {
        return JSON.stringify(db.prepare("SELECT * FROM oauth_records").all());
      } finally {
        db.close();
      }
    },
  };
}

function postgresBackend(): Backend {
  return {
    store: createPostgresOAuthStore({ connectionString: PG_URL, schema }),
    async dump() {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        const r = await c.query(
          `SELECT model, id, payload::text AS payload, uid, grant_id FROM "${schema}".oauth_records`,
        );
        return JSON.stringify(r.rows);
      } finally {
        await c.end();
      }
    },
  };
}

function redisBackend(): Backend {
  return {
    store: createRedisOAuthStore({ url: REDIS_URL, prefix }),
    async dump() {
      const redis = new Redis(REDIS_URL);
      try {
        const out: string[] = [];
        for (const key of await redis.keys(`${prefix}*`)) {
          const type = await redis.type(key);
          const value = type === "set" ? (await redis.smembers(key)).join(" ") : await redis.get(key);
          out.push(`${key} ${value}`);
        }
        return out.join("\n");
      } finally {
        redis.disconnect();
      }
    },
  };
}

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

/** RFC 7591 registration, keeping the registration access token (a bearer credential too). */
async function register(issuer: string) {
  const res = await fetch(`${issuer}/oauth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      redirect_uris: [REDIRECT],
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
    }),
  });
  expect(res.status).toBe(201);
  return (await res.json()) as {
    client_id: string;
    registration_access_token: string;
    registration_client_uri: string;
  };
}

describe.each([
  ["memory", memoryBackend],
  ["sqlite", sqliteBackend],
  ["postgres", postgresBackend],
  ["redis", redisBackend],
] as const)("credentials stored by digest only, %s", (_name, backend) => {
  it("keeps no refresh token, code, session or interaction id in clear, and the flow and refresh still work", async () => {
    const b = backend();
    await b.store.init();
    const t = await startTestAuthServer({ store: b.store });
    try {
      const client = await register(t.issuer);
      const agent = new RecordingAgent();
      const p = pkce();
      const { redirect } = await authorize(t, agent, {
        client_id: client.client_id,
        response_type: "code",
        redirect_uri: REDIRECT,
        code_challenge: p.challenge,
        code_challenge_method: "S256",
        scope: "tools:call",
        resource: t.resource,
      });
      const code = redirect.searchParams.get("code")!;
      const tok = await exchangeCode(t.issuer, {
        code,
        redirectUri: REDIRECT,
        clientId: client.client_id,
        verifier: p.verifier,
        resource: t.resource,
      });
      expect(tok.status).toBe(200);
      const next = await tokenRequest(t.issuer, {
        grant_type: "refresh_token",
        refresh_token: tok.body.refresh_token!,
        client_id: client.client_id,
      });
      expect(next.status, JSON.stringify(next.body)).toBe(200);
      expect((await t.as.verifier.verify(next.body.access_token!)).ok).toBe(true);
      // RFC 7592 read with the registration access token, stored hashed too.
      const read = await fetch(client.registration_client_uri, {
        headers: { authorization: `Bearer ${client.registration_access_token}` },
      });
      expect(read.status).toBe(200);

      // A second client's consent page: its interaction is pending (stored) and knows the session.
      const other = await register(t.issuer);
      const pending = await agent.follow(
        `${t.issuer}/oauth/authorize?${new URLSearchParams({
          client_id: other.client_id,
          response_type: "code",
          redirect_uri: REDIRECT,
          code_challenge: p.challenge,
          code_challenge_method: "S256",
          scope: "tools:call",
          resource: t.resource,
        })}`,
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
    } finally {
      await t.close();
      await b.store.close();
    }
  });

  it("still accepts a refresh token and a session stored by raw id before hashing, but no digest as a token", async () => {
    const b = backend();
    await b.store.init();
    const t = await startTestAuthServer({ store: b.store });
    try {
      const client = await register(t.issuer);
      const agent = new RecordingAgent();
      const params = () => {
        const p = pkce();
        const q = {
          client_id: client.client_id,
          response_type: "code",
          redirect_uri: REDIRECT,
          code_challenge: p.challenge,
          code_challenge_method: "S256",
          scope: "tools:call",
          resource: t.resource,
        };
        return { p, q };
      };
      const first = params();
      const { redirect } = await authorize(t, agent, first.q);
      const tok = await exchangeCode(t.issuer, {
        code: redirect.searchParams.get("code")!,
        redirectUri: REDIRECT,
        clientId: client.client_id,
        verifier: first.p.verifier,
        resource: t.resource,
      });
      const refreshToken = tok.body.refresh_token!;
      const sessionId = agent.cookies.get("_session")!;

      // What a database reader holds is no token.
      const stolen = await tokenRequest(t.issuer, {
        grant_type: "refresh_token",
        refresh_token: sha256(refreshToken),
        client_id: client.client_id,
      });
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
      const second = params();
      const again = await authorize(t, agent, second.q);
      expect(again.loginStatus).toBeUndefined();
      expect(again.consentHtml).toBeUndefined();
      expect(again.redirect.searchParams.get("code")).toBeTruthy();

      // The legacy refresh token still refreshes, once: its reuse is detected as before.
      const refreshed = await tokenRequest(t.issuer, {
        grant_type: "refresh_token",
        refresh_token: refreshToken,
        client_id: client.client_id,
      });
      expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
      const reuse = await tokenRequest(t.issuer, {
        grant_type: "refresh_token",
        refresh_token: refreshToken,
        client_id: client.client_id,
      });
      expect(reuse.body.error).toBe("invalid_grant");
    } finally {
      await t.close();
      await b.store.close();
    }
  });
});
