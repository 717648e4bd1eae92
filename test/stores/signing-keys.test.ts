import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { importJWK, jwtVerify, SignJWT } from "jose";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createMemorySigningKeyStore,
  openSigningKeyStore,
  type SigningKeyStore,
} from "../../src/stores/signing-keys.js";
import { createPostgresSigningKeyStore } from "../../src/stores/signing-keys-postgres.js";
import { createSqliteSigningKeyStore } from "../../src/stores/signing-keys-sqlite.js";

const pgUrl = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const runId = randomBytes(4).toString("hex");
const dir = mkdtempSync(join(tmpdir(), "mcpgate-signing-"));
const schemas: string[] = [];
let n = 0;
const freshSchema = () => {
  const s = `mcpgate_sign_${runId}_${++n}`;
  schemas.push(s);
  return s;
};
let admin: pg.Pool;
beforeAll(() => {
  admin = new pg.Pool({ connectionString: pgUrl, max: 2 });
});
afterAll(async () => {
  for (const s of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await admin.end();
  rmSync(dir, { recursive: true, force: true });
});

async function sign(store: SigningKeyStore): Promise<string> {
  const { active } = await store.current();
  return new SignJWT({ x: 1 })
    .setProtectedHeader({ alg: active.alg, kid: active.kid })
    .sign(await importJWK(active.privateJwk, active.alg));
}

async function verifiesWith(store: SigningKeyStore, jwt: string): Promise<boolean> {
  const { publicJwks } = await store.current();
  const kid = JSON.parse(Buffer.from(jwt.split(".")[0]!, "base64url").toString()).kid;
  const jwk = publicJwks.find((k) => k.kid === kid);
  if (!jwk) return false;
  await jwtVerify(jwt, await importJWK(jwk, jwk.alg));
  return true;
}

type Factory = (opts: { now?: () => number; alg?: "ES256" | "EdDSA" }) => {
  open: () => SigningKeyStore;
};

const factories: Record<string, Factory> = {
  memory: (o) => {
    const s = createMemorySigningKeyStore(o);
    return { open: () => s };
  },
  sqlite: (o) => {
    const path = join(dir, `k${++n}.db`);
    return { open: () => createSqliteSigningKeyStore({ path, ...o }) };
  },
  postgres: (o) => {
    const schema = freshSchema();
    return { open: () => createPostgresSigningKeyStore({ connectionString: pgUrl, schema, max: 2, ...o }) };
  },
};

for (const [name, factory] of Object.entries(factories)) {
  describe(`signing-key store (${name})`, () => {
    it("creates one key on first start and gives every instance the same one", async () => {
      const f = factory({});
      const stores = name === "memory" ? [f.open()] : [f.open(), f.open(), f.open()];
      await Promise.all(stores.map((s) => s.init()));
      const sets = await Promise.all(stores.map((s) => s.current()));
      expect(new Set(sets.map((s) => s.active.kid)).size).toBe(1);
      expect(sets[0]!.publicJwks).toHaveLength(1);
      const pub = sets[0]!.publicJwks[0]!;
      expect(pub).toMatchObject({
        kty: "EC",
        crv: "P-256",
        alg: "ES256",
        use: "sig",
        kid: sets[0]!.active.kid,
      });
      expect(pub.d).toBeUndefined();
      expect(await stores[0]!.list()).toHaveLength(1);
      await Promise.all(stores.map((s) => s.close()));
    });

    it("rotates with overlap: the old key stops signing, stays published, then retires", async () => {
      let t = 1_000_000;
      const f = factory({ now: () => t });
      const a = f.open();
      const b = name === "memory" ? a : f.open();
      await a.init();
      await b.init();
      const before = await sign(a);
      const oldKid = (await a.current()).active.kid;
      const r = await a.rotate({ overlapMs: 60_000 });
      expect(r.kid).not.toBe(oldKid);
      expect(r.activatesAt).toBeGreaterThanOrEqual(t);
      expect(r.retiring).toEqual([{ kid: oldKid, retiresAt: r.activatesAt + 60_000 }]);
      t = r.activatesAt;
      const set = await b.current();
      expect(set.active.kid).toBe(r.kid);
      expect(set.publicJwks.map((k) => k.kid)).toEqual([r.kid, oldKid]);
      // Another instance verifies a token signed before the rotation and one signed after it.
      expect(await verifiesWith(b, before)).toBe(true);
      expect(await verifiesWith(a, await sign(b))).toBe(true);
      expect((await b.list()).map((k) => k.state)).toEqual(["active", "overlap"]);
      t = r.activatesAt + 60_000 - 1;
      expect((await b.current()).publicJwks).toHaveLength(2);
      t += 1;
      expect((await b.current()).publicJwks.map((k) => k.kid)).toEqual([r.kid]);
      expect(await verifiesWith(b, before)).toBe(false);
      // The next rotation removes the retired row.
      await b.rotate({ overlapMs: 0 });
      expect((await a.list()).map((k) => k.kid)).not.toContain(oldKid);
      await a.close();
      if (b !== a) await b.close();
    });

    it("publishes a key ahead of its activation", async () => {
      let t = 5_000_000;
      const f = factory({ now: () => t, alg: "EdDSA" });
      const s = f.open();
      await s.init();
      const first = (await s.current()).active.kid;
      const r = await s.rotate({ overlapMs: 10_000, publishAheadMs: 30_000 });
      let set = await s.current();
      expect(set.active.kid).toBe(first);
      expect(set.publicJwks.map((k) => k.kid)).toEqual([first, r.kid]);
      expect((await s.list()).map((k) => k.state)).toEqual(["pending", "active"]);
      t = r.activatesAt;
      set = await s.current();
      expect(set.active).toMatchObject({ kid: r.kid, alg: "EdDSA" });
      expect(set.publicJwks[0]).toMatchObject({ kty: "OKP", crv: "Ed25519" });
      expect(set.publicJwks).toHaveLength(2);
      t += 10_000;
      expect((await s.current()).publicJwks).toHaveLength(1);
      await s.close();
    });

    it("refuses a negative overlap and an unknown algorithm", async () => {
      const s = factory({}).open();
      await s.init();
      await expect(s.rotate({ overlapMs: -1 })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
      await expect(s.rotate({ overlapMs: 0, alg: "HS256" as never })).rejects.toMatchObject({
        code: "ERR_INVALID_OPTION",
      });
      await s.close();
    });
  });
}

describe("openSigningKeyStore", () => {
  it("opens the store a location names, beside the API keys", async () => {
    const path = join(dir, "open.db");
    const a = await openSigningKeyStore(`sqlite:${path}`);
    const b = await openSigningKeyStore(`sqlite:${path}`, { alg: "EdDSA" });
    expect(a.kind).toBe("sqlite");
    // The first key wins: the second opener's alg applies only to its own rotations.
    expect((await b.current()).active.alg).toBe("ES256");
    await a.close();
    await b.close();
    const schema = freshSchema();
    const p = await openSigningKeyStore(`${pgUrl}?schema=${schema}`);
    expect(p.kind).toBe("postgres");
    const { rows } = await admin.query(`SELECT count(*)::int AS c FROM "${schema}".signing_keys`);
    expect(rows[0].c).toBe(1);
    await p.close();
  });

  it("reports an unreachable database as ERR_STORE_UNAVAILABLE", async () => {
    await expect(openSigningKeyStore("postgres://postgres@127.0.0.1:1/none")).rejects.toMatchObject({
      code: "ERR_STORE_UNAVAILABLE",
    });
  });
});
