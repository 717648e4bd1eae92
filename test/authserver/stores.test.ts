import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { createPostgresOAuthStore } from "../../src/stores/oauth-postgres.js";
import type { OAuthRecordStore } from "../../src/stores/oauth-records.js";
import { createRedisOAuthStore } from "../../src/stores/oauth-redis.js";
import { OAUTH_BACKENDS, oauthTestPlace } from "./backends.js";

const place = oauthTestPlace("oauth_test");
const run = place.run;
afterAll(() => place.cleanup());

const backends = OAUTH_BACKENDS.map((b): [string, () => OAuthRecordStore] => [b, () => place.store(b)]);

describe.each(backends)("%s oauth record store (the same behaviour everywhere)", (_name, make) => {
  it("stores, finds by id and uid, consumes, expires, and revokes a grant's records of every model", async () => {
    const store = make();
    await store.init();
    try {
      await store.upsert("Session", "s1", { uid: "u-1", accountId: "key:abc" }, 60);
      expect(await store.find("Session", "s1")).toEqual({ uid: "u-1", accountId: "key:abc" });
      expect(await store.findByUid("Session", "u-1")).toEqual({ uid: "u-1", accountId: "key:abc" });
      expect(await store.find("Session", "absent")).toBeUndefined();
      expect(await store.find("AccessToken", "s1")).toBeUndefined(); // models never mix

      await store.upsert("AuthorizationCode", "c1", { grantId: "g1", scope: "tools:call" }, 60);
      await store.consume("AuthorizationCode", "c1");
      const consumed = await store.find("AuthorizationCode", "c1");
      expect(typeof consumed?.consumed).toBe("number");
      expect(consumed?.scope).toBe("tools:call");

      await store.upsert("RefreshToken", "r1", { grantId: "g1" }, 600);
      await store.upsert("RefreshToken", "r2", { grantId: "g2" }, 600);
      await store.revokeByGrantId("g1");
      expect(await store.find("AuthorizationCode", "c1")).toBeUndefined();
      expect(await store.find("RefreshToken", "r1")).toBeUndefined();
      expect(await store.find("RefreshToken", "r2")).toEqual({ grantId: "g2" });

      await store.upsert("Interaction", "short", { uid: "u-2" }, 1);
      await new Promise((r) => setTimeout(r, 1100));
      expect(await store.find("Interaction", "short")).toBeUndefined();
      expect(await store.findByUid("Interaction", "u-2")).toBeUndefined();

      await store.destroy("RefreshToken", "r2");
      expect(await store.find("RefreshToken", "r2")).toBeUndefined();
      await expect(store.upsert("Client", "huge", { blob: "x".repeat(70 * 1024) })).rejects.toThrow(
        /too large/,
      );
    } finally {
      await store.close();
    }
  });
});

describe.each(backends)("%s oauth record store: insert if absent", (_name, make) => {
  it("keeps the record already there and returns it, replaces only an expired one, and indexes what it inserts", async () => {
    const store = make();
    await store.init();
    try {
      const id = `once-${randomBytes(4).toString("hex")}`;
      expect(await store.insertIfAbsent("Secret", id, { value: "first" })).toEqual({ value: "first" });
      expect(await store.insertIfAbsent("Secret", id, { value: "second" })).toEqual({ value: "first" });
      expect(await store.find("Secret", id)).toEqual({ value: "first" });

      await store.insertIfAbsent("Interaction", id, { value: "old" }, 1);
      await new Promise((r) => setTimeout(r, 1100));
      expect(await store.insertIfAbsent("Interaction", id, { value: "new" }, 60)).toEqual({ value: "new" });
      expect(await store.find("Interaction", id)).toEqual({ value: "new" });

      await store.insertIfAbsent("Session", id, { uid: `u-${id}`, grantId: `g-${id}` }, 60);
      expect(await store.findByUid("Session", `u-${id}`)).toEqual({ uid: `u-${id}`, grantId: `g-${id}` });
      await store.revokeByGrantId(`g-${id}`);
      expect(await store.find("Session", id)).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});

describe.each(backends)("%s oauth record store: new expiries (clients kept while used)", (_name, make) => {
  it("extends a live record only, and gives an expiry to the records of a model that had none", async () => {
    const store = make();
    await store.init();
    try {
      const id = `lease-${randomBytes(4).toString("hex")}`;
      await store.upsert("Interaction", `${id}-kept`, { uid: `u-${id}` }, 1);
      await store.upsert("Interaction", `${id}-left`, { value: "left" }, 1);
      expect(await store.extend("Interaction", `${id}-kept`, 60)).toBe(true);
      expect(await store.extend("Interaction", `${id}-absent`, 60)).toBe(false);
      const model = `Legacy${randomBytes(4).toString("hex")}`;
      await store.upsert(model, "old", { value: "old" }); // no expiry
      await store.upsert(model, "leased", { value: "leased" }, 60);
      // Redis holds nothing without an expiry; SQL and memory have one record to give one to.
      expect(await store.expireUnbounded(model, 1)).toBe(store.kind === "redis" ? 0 : 1);
      await new Promise((r) => setTimeout(r, 1100));
      expect(await store.find("Interaction", `${id}-kept`)).toEqual({ uid: `u-${id}` });
      expect(await store.findByUid("Interaction", `u-${id}`)).toEqual({ uid: `u-${id}` });
      expect(await store.find("Interaction", `${id}-left`)).toBeUndefined();
      expect(await store.extend("Interaction", `${id}-left`, 60)).toBe(false); // expired: not revived
      expect(await store.find("Interaction", `${id}-left`)).toBeUndefined();
      expect(await store.find(model, "leased")).toEqual({ value: "leased" });
      if (store.kind !== "redis") expect(await store.find(model, "old")).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});

describe("durable stores count live clients (bounds dynamic registration)", () => {
  it.each(backends.filter(([n]) => n !== "redis"))("%s", async (_name, make) => {
    const store = make();
    await store.init();
    try {
      const before = await store.count("Client");
      await store.upsert("Client", `c-${run}-1`, { client_id: "a" });
      await store.upsert("Client", `c-${run}-2`, { client_id: "b" });
      expect(await store.count("Client")).toBe(before + 2);
    } finally {
      await store.close();
    }
  });
});

describe("store outages fail closed with ERR_STORE_UNAVAILABLE", () => {
  it("postgres and redis unreachable", async () => {
    const p = createPostgresOAuthStore({ connectionString: "postgres://postgres@127.0.0.1:1/none" });
    await expect(p.init()).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
    await p.close();
    const r = createRedisOAuthStore({ url: "redis://127.0.0.1:1" });
    await expect(r.init()).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
    await r.close();
  });
});
