import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { tokenThroughFlow } from "./harness.js";

const PG_URL = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const REDIRECT = "http://127.0.0.1:9/callback";

/**
 * The gateway's configuration path for shared state: `authServer.store` on PostgreSQL (clients,
 * grants, refresh tokens, signing keys) and `state.redis` (codes, interactions, sessions).
 */
describe("authServer state on PostgreSQL and Redis, through the gateway's configuration", () => {
  const schema = `as_gw_${randomBytes(4).toString("hex")}`;
  let dir: string;
  let gw: TestGateway;
  let key: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-as-pg-"));
    const keysAt = `sqlite:${join(dir, "keys.db")}`;
    const keys = await openKeyStore(keysAt);
    ({ key } = await issueApiKey(keys, { name: "pg", scopes: ["tools:call"] }));
    await keys.close();
    gw = await startTestGateway({
      upstream: { url: "http://127.0.0.1:9/mcp" },
      auth: { apiKeys: { store: keysAt } },
      state: { redis: REDIS_URL, prefix: `mcpgate-as-gw-${schema}:` },
      authServer: { login: { apiKey: {} }, store: `${PG_URL}?schema=${schema}` },
      policy: { default: "deny", tools: [{ match: "*", scopes: ["tools:call"] }] },
    });
  }, 30_000);

  afterAll(async () => {
    await gw?.close();
    rmSync(dir, { recursive: true, force: true });
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await c.end();
  });

  it("registers, signs in, issues and verifies a token, with the records in that schema", async () => {
    const issuer = new URL(gw.url).origin;
    const tok = await tokenThroughFlow(issuer, key, gw.publicUrl, REDIRECT);
    expect(tok.status).toBe(200);
    const r = await gw.gate.options.verifiers[0]!.verify(tok.body.access_token!);
    expect(r.ok).toBe(true);
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    try {
      const rows = await c.query(
        `SELECT model, COUNT(*)::int AS n FROM "${schema}".oauth_records GROUP BY model`,
      );
      const models = Object.fromEntries(rows.rows.map((x: { model: string; n: number }) => [x.model, x.n]));
      expect(models.Client).toBe(1);
      expect(models.Grant).toBe(1);
      expect(models.RefreshToken).toBe(1);
      expect(models.AuthorizationCode).toBeUndefined(); // in Redis
      const keys = await c.query(`SELECT COUNT(*)::int AS n FROM "${schema}".signing_keys`);
      expect(keys.rows[0].n).toBeGreaterThanOrEqual(1);
    } finally {
      await c.end();
    }
  });
});
