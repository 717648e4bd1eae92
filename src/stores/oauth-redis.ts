import { Redis } from "ioredis";
import type { OAuthPayload, OAuthRecordStore } from "./oauth-records.js";
import { oauthStoreUnavailable, serializeOAuthPayload } from "./oauth-records.js";

/** Options of {@link createRedisOAuthStore}. */
export interface RedisOAuthStoreOptions {
  /** `redis://…`. Either this or `client`. */
  url?: string;
  /** A client you own (not closed by `close()`). */
  client?: Redis;
  /** Key prefix (config `state.prefix`). Default "mcpgate:". */
  prefix?: string;
  /** Most seconds a record without an expiry is kept (Redis holds short-lived records only). Default 86400. */
  maxTtlSec?: number;
}

// Mark consumed without a read-modify-write race between instances: one script, TTL kept.
const CONSUME_LUA = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local o = cjson.decode(v)
o['consumed'] = tonumber(ARGV[1])
redis.call('SET', KEYS[1], cjson.encode(o), 'KEEPTTL')
return 1`;

// Insert unless present (SET NX), with the indexes upsert keeps; else the record that is there.
// KEYS: record, uid index, grant set. ARGV: payload, ttl, id, has uid, has grant, grant set ttl.
const INSERT_IF_ABSENT_LUA = `
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return redis.call('GET', KEYS[1])
end
if ARGV[4] == '1' then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2]) end
if ARGV[5] == '1' then
  redis.call('SADD', KEYS[3], KEYS[1])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
return ARGV[1]`;

// A new expiry for a live record and its uid index. KEYS: record. ARGV: ttl, uid key prefix.
const EXTEND_LUA = `
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 0 then return 0 end
local o = cjson.decode(redis.call('GET', KEYS[1]))
if type(o['uid']) == 'string' then redis.call('EXPIRE', ARGV[2] .. o['uid'], ARGV[1]) end
return 1`;

/**
 * Short-lived authorization-server records in Redis (authorization codes, interactions, browser
 * sessions), so several gateway instances behind one load balancer serve one authorization server
 * (DESIGN.md §9: "short-lived codes in Redis when `state.redis` is set"). Layout under `prefix`:
 * `oauth:<model>:<id>` (JSON, PX = expiry), `oauth:uid:<model>:<uid>` → id, `oauth:grant:<grantId>`
 * (a set of record keys, for revocation by grant).
 *
 * @example const store = createRedisOAuthStore({ url: "redis://127.0.0.1:6379" }); await store.init();
 */
export function createRedisOAuthStore(options: RedisOAuthStoreOptions): OAuthRecordStore {
  const prefix = options.prefix ?? "mcpgate:";
  const maxTtlSec = options.maxTtlSec ?? 86_400;
  const owns = !options.client;
  const redis =
    options.client ??
    new Redis(options.url ?? "redis://127.0.0.1:6379", {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 1000,
      commandTimeout: 1000,
    });
  if (owns) redis.on("error", () => {}); // the client reconnects; commands fail with ERR_STORE_UNAVAILABLE
  const rec = (model: string, id: string) => `${prefix}oauth:${model}:${id}`;
  const uidKey = (model: string, uid: string) => `${prefix}oauth:uid:${model}:${uid}`;
  const grantKey = (grantId: string) => `${prefix}oauth:grant:${grantId}`;
  const ttlOf = (expiresInSec: number | undefined) =>
    Math.max(1, Math.min(maxTtlSec, Math.ceil(expiresInSec ?? maxTtlSec)));

  async function run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw oauthStoreUnavailable("redis", err);
    }
  }
  const parse = (v: string | null): OAuthPayload | undefined =>
    v ? (JSON.parse(v) as OAuthPayload) : undefined;

  return {
    kind: "redis",
    async init() {
      if (owns && redis.status === "wait") await run(() => redis.connect());
      await run(() => redis.ping());
    },
    async close() {
      if (owns) redis.disconnect();
    },
    async upsert(model, id, payload, expiresInSec) {
      const text = serializeOAuthPayload(payload);
      const ttl = ttlOf(expiresInSec);
      const m = redis.multi().set(rec(model, id), text, "EX", ttl);
      if (payload.uid) m.set(uidKey(model, payload.uid), id, "EX", ttl);
      if (payload.grantId) {
        m.sadd(grantKey(payload.grantId), rec(model, id));
        m.expire(grantKey(payload.grantId), maxTtlSec);
      }
      await run(() => m.exec());
    },
    async insertIfAbsent(model, id, payload, expiresInSec) {
      const text = serializeOAuthPayload(payload);
      const stored = await run(() =>
        redis.eval(
          INSERT_IF_ABSENT_LUA,
          3,
          rec(model, id),
          uidKey(model, payload.uid ?? ""),
          grantKey(payload.grantId ?? ""),
          text,
          String(ttlOf(expiresInSec)),
          id,
          payload.uid ? "1" : "0",
          payload.grantId ? "1" : "0",
          String(maxTtlSec),
        ),
      );
      return parse(stored as string)!;
    },
    async find(model, id) {
      return parse(await run(() => redis.get(rec(model, id))));
    },
    async findByUid(model, uid) {
      const id = await run(() => redis.get(uidKey(model, uid)));
      return id ? parse(await run(() => redis.get(rec(model, id)))) : undefined;
    },
    async consume(model, id) {
      await run(() => redis.eval(CONSUME_LUA, 1, rec(model, id), String(Math.floor(Date.now() / 1000))));
    },
    async destroy(model, id) {
      await run(() => redis.del(rec(model, id)));
    },
    async revokeByGrantId(grantId) {
      const keys = await run(() => redis.smembers(grantKey(grantId)));
      await run(() => redis.del(grantKey(grantId), ...keys));
    },
    async count(model) {
      // Not used for the short-lived models Redis holds; a SCAN would be O(keyspace).
      void model;
      return 0;
    },
    async extend(model, id, expiresInSec) {
      const n = await run(() =>
        redis.eval(EXTEND_LUA, 1, rec(model, id), String(ttlOf(expiresInSec)), uidKey(model, "")),
      );
      return n === 1;
    },
    async expireUnbounded(model) {
      // Every Redis record is written with an expiry (maxTtlSec at most): none is unbounded.
      void model;
      return 0;
    },
  };
}
