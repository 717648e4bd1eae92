import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createLocalJWKSet, importJWK, jwtVerify, SignJWT } from "jose";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { openSigningKeyStore, type SigningKeyStore } from "../../src/stores/signing-keys.js";

/**
 * Private signing keys sealed at rest (MCPGATE_SIGNING_KEY_SECRET): real SQLite files and a real
 * PostgreSQL schema; what is stored is read straight from the database.
 */

const pgUrl = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const dir = mkdtempSync(join(tmpdir(), "mcpgate-seal-"));
const SECRET = `seal-secret-${randomBytes(24).toString("hex")}`;
const OTHER = `other-secret-${randomBytes(24).toString("hex")}`;
let n = 0;
const sqlite = () => join(dir, `keys-${++n}.db`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const storedRows = (file: string) =>
  new Database(file, { readonly: true }).prepare("SELECT kid, private_jwk FROM signing_keys").all() as Array<{
    kid: string;
    private_jwk: string;
  }>;

async function signAndVerify(store: SigningKeyStore): Promise<void> {
  const { active, publicJwks } = await store.current();
  const jwt = await new SignJWT({ sub: "key:abc" })
    .setProtectedHeader({ alg: active.alg, kid: active.kid })
    .sign(await importJWK(active.privateJwk, active.alg));
  const { payload } = await jwtVerify(jwt, createLocalJWKSet({ keys: publicJwks }));
  expect(payload.sub).toBe("key:abc");
}

describe("sealed signing keys", () => {
  it("stores the private key sealed (no JWK text, no private parameter) and signs with it", async () => {
    const file = sqlite();
    const store = await openSigningKeyStore(`sqlite:${file}`, { secret: SECRET });
    try {
      await signAndVerify(store);
      const { active } = await store.current();
      const [row] = storedRows(file);
      expect(row!.kid).toBe(active.kid);
      expect(row!.private_jwk.startsWith("sealed:v1:")).toBe(true);
      expect(row!.private_jwk).not.toContain(active.privateJwk.d as string);
      expect(row!.private_jwk).not.toContain('"kty"');
      // Rotation seals the new key too.
      await store.rotate({ overlapMs: 60_000, alg: "EdDSA" });
      await signAndVerify(store);
      expect(storedRows(file).every((r) => r.private_jwk.startsWith("sealed:v1:"))).toBe(true);
    } finally {
      await store.close();
    }
  });

  it("will not open without the secret, nor with another one, and says which variable to set", async () => {
    const file = sqlite();
    await (await openSigningKeyStore(`sqlite:${file}`, { secret: SECRET })).close();
    const without = openSigningKeyStore(`sqlite:${file}`);
    await expect(without).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
    await expect(without).rejects.toThrow(/sealed: set MCPGATE_SIGNING_KEY_SECRET/);
    const wrong = openSigningKeyStore(`sqlite:${file}`, { secret: OTHER });
    await expect(wrong).rejects.toThrow(/MCPGATE_SIGNING_KEY_SECRET is not the secret it was sealed with/);
    await expect(wrong).rejects.not.toThrow(new RegExp(OTHER));
    const right = await openSigningKeyStore(`sqlite:${file}`, { secret: SECRET });
    await signAndVerify(right);
    await right.close();
  });

  it("refuses a short secret", async () => {
    await expect(openSigningKeyStore(`sqlite:${sqlite()}`, { secret: "too-short" })).rejects.toThrow(
      /at least 32 characters/,
    );
  });

  it("seals keys stored plain when a secret is set, keeping their kid and their tokens valid", async () => {
    const file = sqlite();
    const plain = await openSigningKeyStore(`sqlite:${file}`);
    const before = await plain.current();
    const oldToken = await new SignJWT({ sub: "static" })
      .setProtectedHeader({ alg: before.active.alg, kid: before.active.kid })
      .sign(await importJWK(before.active.privateJwk, before.active.alg));
    await plain.close();
    expect(storedRows(file)[0]!.private_jwk.startsWith("{")).toBe(true);

    const sealed = await openSigningKeyStore(`sqlite:${file}`, { secret: SECRET });
    try {
      const after = await sealed.current();
      expect(after.active.kid).toBe(before.active.kid);
      expect(storedRows(file).map((r) => r.private_jwk.startsWith("sealed:v1:"))).toEqual([true]);
      await jwtVerify(oldToken, createLocalJWKSet({ keys: after.publicJwks }));
    } finally {
      await sealed.close();
    }
  });

  it("does not let a process without the secret add a plain key to a sealed store", async () => {
    const file = sqlite();
    await (await openSigningKeyStore(`sqlite:${file}`, { secret: SECRET })).close();
    // Even with the active key gone (retired), nothing plain is created beside the sealed ones.
    const db = new Database(file);
    db.prepare("UPDATE signing_keys SET retires_at = 1").run();
    db.close();
    await expect(openSigningKeyStore(`sqlite:${file}`)).rejects.toThrow(
      /sealed: set MCPGATE_SIGNING_KEY_SECRET/,
    );
    expect(storedRows(file)).toHaveLength(1);
  });

  it("binds a sealed key to its kid: moved onto another row it does not open", async () => {
    const file = sqlite();
    const store = await openSigningKeyStore(`sqlite:${file}`, { secret: SECRET });
    await store.rotate({ overlapMs: 60_000 });
    await store.close();
    const db = new Database(file);
    const rows = db
      .prepare("SELECT kid, private_jwk FROM signing_keys ORDER BY activates_at")
      .all() as Array<{
      kid: string;
      private_jwk: string;
    }>;
    // The active (newest) row gets the older key's sealed value.
    db.prepare("UPDATE signing_keys SET private_jwk = ? WHERE kid = ?").run(
      rows[0]!.private_jwk,
      rows[1]!.kid,
    );
    db.close();
    await expect(openSigningKeyStore(`sqlite:${file}`, { secret: SECRET })).rejects.toThrow(/does not open/);
  });

  it("seals in PostgreSQL the same way", async () => {
    const schema = `mcpgate_seal_${randomBytes(4).toString("hex")}`;
    const admin = new pg.Pool({ connectionString: pgUrl, max: 1 });
    try {
      const store = await openSigningKeyStore(`${pgUrl}?schema=${schema}`, { secret: SECRET });
      await signAndVerify(store);
      await store.close();
      const { rows } = await admin.query(`SELECT private_jwk FROM "${schema}".signing_keys`);
      expect(rows).toHaveLength(1);
      expect(rows[0].private_jwk.startsWith("sealed:v1:")).toBe(true);
      await expect(openSigningKeyStore(`${pgUrl}?schema=${schema}`)).rejects.toThrow(/sealed/);
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });
});
