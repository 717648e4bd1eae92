import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/core/audit-event.js";

const MAIN = resolve("src/cli/main.ts");
const TSX = pathToFileURL(resolve("node_modules/tsx/dist/loader.mjs")).href;
const PG_URL = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const dir = mkdtempSync(join(tmpdir(), "mcpgate-keys-audit-"));
const schema = `keys_audit_${randomBytes(4).toString("hex")}`;

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
});

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, MCPGATE_KEY_PEPPER: "" };
  delete env.MCPGATE_STORE;
  return new Promise((done) => {
    execFile(
      process.execPath,
      ["--import", TSX, MAIN, ...args],
      { env, timeout: 45_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        done({ code: typeof code === "number" ? code : 1, stdout, stderr });
      },
    );
  });
}

describe("mcpgate keys writes key lifecycle events to the audit trail", () => {
  it("audits create, rotate and revoke to the configured file, with display prefixes and never the key", async () => {
    const audit = join(dir, "audit.jsonl");
    const config = join(dir, "mcpgate.yaml");
    writeFileSync(
      config,
      `auth:\n  apiKeys: { store: "sqlite:${join(dir, "keys.db")}" }\nlogging: { audit: "${audit}" }\n`,
    );
    const created = await cli([
      "keys",
      "--config",
      config,
      "create",
      "--name",
      "ci",
      "--scopes",
      "tools:call",
      "--json",
    ]);
    expect(created.code).toBe(0);
    const first = JSON.parse(created.stdout) as { id: string; key: string };
    const rotated = await cli(["keys", "--config", config, "rotate", first.id, "--grace", "1h", "--json"]);
    expect(rotated.code).toBe(0);
    const second = JSON.parse(rotated.stdout) as { id: string; key: string };
    expect((await cli(["keys", "--config", config, "revoke", second.id])).code).toBe(0);
    const text = readFileSync(audit, "utf8");
    const events = text
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as AuditEvent);
    expect(events.map((e) => [e.type, e.other])).toEqual([
      ["key_created", `mcpg_${first.id}`],
      ["key_rotated", `mcpg_${first.id}`],
      ["key_revoked", `mcpg_${second.id}`],
    ]);
    expect(events[1]!.detail?.successor).toBe(`mcpg_${second.id}`);
    for (const e of events) {
      expect(e.actor).toMatch(/^cli:/);
      expect(Date.parse(e.time)).not.toBeNaN();
    }
    for (const key of [first.key, second.key]) {
      expect(text).not.toContain(key);
      expect(text).not.toContain(key.split("_").slice(2).join("_"));
    }
  });

  it("also writes them to the audit table when PostgreSQL holds the keys", async () => {
    const store = `${PG_URL}?schema=${schema}`;
    const created = await cli(["keys", "--store", store, "create", "--name", "pg", "--json"]);
    expect(created.code).toBe(0);
    const { id, key } = JSON.parse(created.stdout) as { id: string; key: string };
    const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
    try {
      const { rows } = await pool.query(`SELECT type, actor, other, detail FROM "${schema}".audit_events`);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ type: "key_created", other: `mcpg_${id}` });
      expect(JSON.stringify(rows)).not.toContain(key.split("_").slice(2).join("_"));
    } finally {
      await pool.end();
    }
  });
});
