import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { afterAll, describe, type ExpectStatic, it } from "vitest";
import { parseApiKey } from "../../src/authn/api-key.js";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { createApiKeyVerifier } from "../../src/authn/stored-key.js";
import type { KeyStore } from "../../src/stores/key-store.js";
import { createSqliteKeyStore } from "../../src/stores/sqlite.js";

const MAIN = resolve("src/cli/main.ts");
// Absolute, so the CLI also starts from a working directory outside the project.
const TSX = pathToFileURL(resolve("node_modules/tsx/dist/loader.mjs")).href;
const dir = mkdtempSync(join(tmpdir(), "mcpgate-cli-keys-"));
const PG_URL = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const pgSchema = `mcpgate_cli_${randomBytes(4).toString("hex")}`;
let n = 0;
const freshStore = () => `sqlite:${join(dir, `k${++n}.db`)}`;

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
  await pool.query(`DROP SCHEMA IF EXISTS "${pgSchema}" CASCADE`);
  await pool.end();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `mcpgate …` as a real child process; MCPGATE_STORE and the pepper are cleared unless given. */
function cli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, MCPGATE_STORE: "", MCPGATE_KEY_PEPPER: "", ...opts.env };
  if (env.MCPGATE_STORE === "") delete env.MCPGATE_STORE;
  return new Promise((done) => {
    execFile(
      process.execPath,
      ["--import", TSX, MAIN, ...args],
      { env, cwd: opts.cwd ?? process.cwd(), timeout: 45_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        done({ code: typeof code === "number" ? code : 1, stdout, stderr });
      },
    );
  });
}

/** Open a SQLite store location in-process (setup and inspection without spawning the CLI). */
async function withSqlite<T>(location: string, fn: (store: KeyStore) => Promise<T>): Promise<T> {
  const store = createSqliteKeyStore({ path: location.slice("sqlite:".length) });
  await store.init();
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

const names = (store: string) => withSqlite(store, async (s) => (await s.list()).map((r) => r.name));

function expectUserError(expect: ExpectStatic, r: Run, pattern: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.stdout).toBe("");
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe.concurrent("mcpgate keys create", { timeout: 60_000 }, () => {
  it("prints the DESIGN.md §6 JSON shape with a key that the stored-key verifier accepts", async ({
    expect,
  }) => {
    const store = freshStore();
    const r = await cli([
      "keys",
      "create",
      "--store",
      store,
      "--name",
      "ci bot",
      "--scopes",
      "tools:call,admin",
      "--expires",
      "90d",
      "--tenant",
      "acme",
      "--json",
    ]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Object.keys(out).sort()).toEqual(["expiresAt", "id", "key", "name", "probe", "scopes", "tenant"]);
    expect(out).toMatchObject({
      name: "ci bot",
      scopes: ["tools:call", "admin"],
      probe: false,
      tenant: "acme",
    });
    const days = (Date.parse(out.expiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89.9);
    expect(days).toBeLessThanOrEqual(90);
    const parsed = parseApiKey(out.key);
    expect(parsed.ok && parsed.id).toBe(out.id);

    const s = createSqliteKeyStore({ path: store.slice("sqlite:".length) });
    await s.init();
    const v = createApiKeyVerifier({ store: s });
    const verified = await v.verify(out.key);
    expect(verified.ok && verified.identity).toMatchObject({
      tenant: "acme",
      scopes: ["tools:call", "admin"],
    });
    await v.close();
    await s.close();
  });

  it("hashes with the pepper from MCPGATE_KEY_PEPPER", async ({ expect }) => {
    const store = freshStore();
    const r = await cli(["keys", "create", "--store", store, "--name", "p", "--json"], {
      env: { MCPGATE_KEY_PEPPER: "pepper-for-cli-test" },
    });
    const { key } = JSON.parse(r.stdout);
    const s = createSqliteKeyStore({ path: store.slice("sqlite:".length) });
    await s.init();
    const withPepper = createApiKeyVerifier({ store: s, pepper: "pepper-for-cli-test" });
    const without = createApiKeyVerifier({ store: s });
    expect((await withPepper.verify(key)).ok).toBe(true);
    expect((await without.verify(key)).ok).toBe(false);
    await Promise.all([withPepper.close(), without.close()]);
    await s.close();
  });

  it("prints a human summary whose last line is the key, shown once", async ({ expect }) => {
    const store = freshStore();
    const r = await cli(["keys", "create", "--store", store, "--name", "probe-bot", "--probe"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(parseApiKey(lines.at(-1)).ok).toBe(true);
    expect(r.stdout).toMatch(/probe:\s+yes/);
    expect(r.stdout).toMatch(/shown once/);
  });
});

describe.concurrent("mcpgate keys list", { timeout: 60_000 }, () => {
  it("shows every key with its status and never a secret or hash", async ({ expect }) => {
    const store = freshStore();
    const [a, b] = await withSqlite(store, async (st) => {
      const a = await issueApiKey(st, { name: "alpha", now: 1000 });
      const b = await issueApiKey(st, { name: "beta", scopes: ["x"], probe: true, now: 2000 });
      await st.revoke(b.record.id);
      return [
        { id: a.record.id, key: a.key },
        { id: b.record.id, key: b.key },
      ];
    });

    const json = await cli(["keys", "list", "--store", store, "--json"]);
    expect(json.code).toBe(0);
    const rows = JSON.parse(json.stdout) as Record<string, unknown>[];
    expect(rows.map((r) => [r.id, r.displayPrefix, r.name, r.status, r.probe])).toEqual([
      [a.id, `mcpg_${a.id}`, "alpha", "active", false],
      [b.id, `mcpg_${b.id}`, "beta", "revoked", true],
    ]);
    for (const row of rows) {
      expect(row).not.toHaveProperty("hash");
      expect(row).not.toHaveProperty("key");
      expect(row).toHaveProperty("lastUsedAt");
      expect(row).toHaveProperty("createdAt");
      expect(row).toHaveProperty("expiresAt");
    }

    const text = await cli(["keys", "list", "--store", store]);
    if (!a || !b) throw new Error("setup");
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /ID\s+PREFIX\s+NAME\s+TENANT\s+SCOPES\s+CREATED\s+EXPIRES\s+LAST USED\s+STATUS/,
    );
    expect(text.stdout).toContain(`mcpg_${a.id}`);
    expect(text.stdout).toMatch(/beta .*revoked/);
    for (const out of [json.stdout, text.stdout]) {
      for (const k of [a.key, b.key]) expect(out).not.toContain(k.split("_")[2]);
    }
  });

  it("reads the store from MCPGATE_STORE, then the config file, then ./mcpgate.db", async ({ expect }) => {
    const envStore = freshStore();
    const cfgStore = freshStore();
    const cfg = join(dir, "gw.yaml");
    writeFileSync(cfg, `auth:\n  apiKeys:\n    store: "${cfgStore}"\n`);
    const otherStore = freshStore();
    const cwd = mkdtempSync(join(dir, "cwd-"));
    const runs = await Promise.all([
      cli(["keys", "create", "--name", "from-env"], { env: { MCPGATE_STORE: envStore } }),
      cli(["keys", "create", "--config", cfg, "--name", "from-config"]),
      // --store wins over the environment and the config file.
      cli(["keys", "create", "--config", cfg, "--store", otherStore, "--name", "from-flag"], {
        env: { MCPGATE_STORE: envStore },
      }),
      cli(["keys", "create", "--name", "default"], { cwd }),
    ]);
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0, 0]);
    expect(await names(envStore)).toEqual(["from-env"]);
    expect(await names(cfgStore)).toEqual(["from-config"]);
    expect(await names(otherStore)).toEqual(["from-flag"]);
    expect(await names(`sqlite:${join(cwd, "mcpgate.db")}`)).toEqual(["default"]);
  });

  it("works against PostgreSQL in the schema named in the URL", async ({ expect }) => {
    const store = `${PG_URL}?schema=${pgSchema}`;
    const created = await cli(["keys", "create", "--store", store, "--name", "pg", "--json"]);
    expect(created.code).toBe(0);
    const { id } = JSON.parse(created.stdout);
    const listed = JSON.parse((await cli(["keys", "list", "--store", store, "--json"])).stdout);
    expect(listed.map((r: { id: string }) => r.id)).toEqual([id]);
  });
});

describe.concurrent("mcpgate keys revoke and rotate", { timeout: 60_000 }, () => {
  it("revokes by id or display prefix, idempotently", async ({ expect }) => {
    const store = freshStore();
    const id = await withSqlite(store, async (st) => (await issueApiKey(st, { name: "r" })).record.id);
    const first = await cli(["keys", "revoke", "--store", store, `mcpg_${id}`, "--json"]);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ id, alreadyRevoked: false });
    const again = await cli(["keys", "revoke", "--store", store, id]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/Already revoked/);
  });

  it("rotates with a grace period and prints the new key with replaces and graceUntil", async ({
    expect,
  }) => {
    const store = freshStore();
    const old = await withSqlite(
      store,
      async (st) => (await issueApiKey(st, { name: "rot", scopes: ["a", "b"] })).record,
    );
    const r = await cli(["keys", "rotate", "--store", store, old.id, "--grace", "24h", "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ name: "rot", scopes: ["a", "b"], replaces: old.id, probe: false });
    expect(out.id).not.toBe(old.id);
    expect(parseApiKey(out.key).ok).toBe(true);
    const hours = (Date.parse(out.graceUntil) - Date.now()) / 3_600_000;
    expect(hours).toBeGreaterThan(23.9);
    expect(hours).toBeLessThanOrEqual(24);

    const rows = JSON.parse((await cli(["keys", "list", "--store", store, "--json"])).stdout);
    const oldRow = rows.find((x: { id: string }) => x.id === old.id);
    expect(oldRow).toMatchObject({ status: "grace", replacedBy: out.id });
    expect(rows.find((x: { id: string }) => x.id === out.id)).toMatchObject({
      status: "active",
      replaces: old.id,
    });

    const twice = await cli(["keys", "rotate", "--store", store, old.id]);
    expectUserError(expect, twice, /already rotated/);
  });
});

describe.concurrent("mcpgate keys: user errors exit 2 with one line and no stack", {
  timeout: 60_000,
}, () => {
  it("refuses an unknown id or something that is not an id", async ({ expect }) => {
    const store = freshStore();
    const [unknown, notId] = await Promise.all([
      cli(["keys", "revoke", "--store", store, "ZZZZZZZZ"]),
      cli(["keys", "rotate", "--store", store, "not-an-id"]),
    ]);
    expectUserError(expect, unknown, /no key with id ZZZZZZZZ/);
    expectUserError(expect, notId, /not a key id/);
  });

  it("refuses a bad duration and bad scope syntax", async ({ expect }) => {
    const store = freshStore();
    const [expires, grace, scope] = await Promise.all([
      cli(["keys", "create", "--store", store, "--name", "x", "--expires", "soon"]),
      cli(["keys", "rotate", "--store", store, "AAAAAAAA", "--grace", "1y"]),
      cli(["keys", "create", "--store", store, "--name", "x", "--scopes", 'ok,"quoted"']),
    ]);
    expectUserError(expect, expires, /--expires/);
    expectUserError(expect, grace, /--grace/);
    expectUserError(expect, scope, /invalid scope/);
  });

  it("refuses an unreachable store", async ({ expect }) => {
    const [pgDown, unknownScheme] = await Promise.all([
      cli(["keys", "list", "--store", "postgres://postgres@127.0.0.1:1/nope"]),
      cli(["keys", "list", "--store", "mysql://x"]),
    ]);
    expectUserError(expect, pgDown, /postgres key store: ECONNREFUSED/);
    expectUserError(expect, unknownScheme, /unknown location/);
  });

  it("refuses unknown flags and a missing --name", async ({ expect }) => {
    const [bad, missing] = await Promise.all([cli(["keys", "list", "--bogus"]), cli(["keys", "create"])]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown option/);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--name/);
  });
});
