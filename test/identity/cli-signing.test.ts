import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { openSigningKeyStore } from "../../src/stores/signing-keys.js";

const MAIN = resolve("src/cli/main.ts");
const TSX = pathToFileURL(resolve("node_modules/tsx/dist/loader.mjs")).href;
const dir = mkdtempSync(join(tmpdir(), "mcpgate-cli-signing-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(
  args: string[],
  extraEnv: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, ...extraEnv };
  delete env.MCPGATE_STORE;
  return new Promise((done) => {
    execFile(
      process.execPath,
      ["--import", TSX, MAIN, ...args],
      { env, timeout: 50_000 },
      (err, stdout, stderr) => {
        const code = err ? Number((err as { code?: number }).code ?? 1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

describe("mcpgate keys rotate-signing / list-signing", () => {
  it("rotates the signing key in the store a running gateway reads, keeping the old one published", async () => {
    const store = `sqlite:${join(dir, "keys.db")}`;
    const keys = await openSigningKeyStore(store);
    const first = (await keys.current()).active.kid;
    const auditFile = join(dir, "audit.jsonl");
    const r = await cli([
      "keys",
      "rotate-signing",
      "--store",
      store,
      "--overlap",
      "2h",
      "--alg",
      "EdDSA",
      "--audit",
      auditFile,
      "--json",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.alg).toBe("EdDSA");
    expect(out.retiring).toEqual([{ kid: first, retiresAt: expect.any(String) }]);
    const retiresAt = Date.parse(out.retiring[0].retiresAt);
    expect(retiresAt - Date.parse(out.activatesAt)).toBe(2 * 3600_000);
    const set = await keys.current();
    expect(set.active).toMatchObject({ kid: out.kid, alg: "EdDSA" });
    expect(set.publicJwks.map((k) => k.kid)).toEqual([out.kid, first]);

    const audit = readFileSync(auditFile, "utf8");
    expect(audit).toMatch(/"type":"signing_key_rotated"/);
    expect(audit).toContain(`"other":"${out.kid}"`);
    expect(audit).not.toContain(String((await keys.current()).active.privateJwk.d));
    const list = await cli(["keys", "list-signing", "--store", store, "--json"]);
    expect(list.code).toBe(0);
    expect(list.stdout).not.toMatch(/"d"|privateJwk|"x"/);
    expect(JSON.parse(list.stdout).map((k: { state: string }) => k.state)).toEqual(["active", "overlap"]);
    await keys.close();
  }, 120_000);

  it("refuses an unknown algorithm or a bad duration with exit 2 and one line", async () => {
    const store = `sqlite:${join(dir, "bad.db")}`;
    const r = await cli(["keys", "rotate-signing", "--store", store, "--alg", "HS256"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe("mcpgate: error: --alg must be ES256 or EdDSA");
    const d = await cli(["keys", "rotate-signing", "--store", store, "--overlap", "soon"]);
    expect(d.code).toBe(2);
    expect(d.stderr.trim().split("\n")).toHaveLength(1);
  }, 120_000);

  it("rotates a sealed store only with MCPGATE_SIGNING_KEY_SECRET, sealing the new key", async () => {
    const secret = `cli-seal-${"s".repeat(40)}`;
    const file = join(dir, "sealed.db");
    const store = `sqlite:${file}`;
    await (await openSigningKeyStore(store, { secret })).close();
    const refused = await cli(["keys", "rotate-signing", "--store", store]);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toMatch(/sealed: set MCPGATE_SIGNING_KEY_SECRET/);
    const ok = await cli(["keys", "rotate-signing", "--store", store, "--json"], {
      MCPGATE_SIGNING_KEY_SECRET: secret,
    });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).not.toContain(secret);
    const keys = await openSigningKeyStore(store, { secret });
    expect((await keys.current()).active.kid).toBe(JSON.parse(ok.stdout).kid);
    await keys.close();
    const db = new Database(file, { readonly: true });
    const rows = db.prepare("SELECT private_jwk FROM signing_keys").all() as Array<{ private_jwk: string }>;
    db.close();
    expect(rows).toHaveLength(2);
    expect(rows.every((r) => r.private_jwk.startsWith("sealed:v1:"))).toBe(true);
  }, 120_000);
});
