import { Redis } from "ioredis";
import type {
  AdmitInput,
  AdmitResult,
  RateOutcome,
  SessionOwner,
  SessionRoom,
  StateStore,
} from "../core/contracts.js";
import { McpGateError, SessionLimitError } from "../core/errors.js";
import { defaultSessionsPerPrincipal, MAX_SESSION_ID_LENGTH } from "./memory-state.js";

/**
 * Session bindings and rate-limit buckets in Redis, shared by every gateway instance
 * (DESIGN.md principle 7). Key layout, under `prefix` (default "mcpgate:"):
 *
 * - `<prefix>s:<sessionId>`: hash `{p: principal, d: display}`, PEXPIRE = idle TTL, slid on use;
 * - `<prefix>sessions`: sorted set of live session ids, score = idle deadline (ms); it counts
 *   sessions (a new one is refused when `maxSessions` are live: none is evicted);
 * - `<prefix>ps:<principal>`: the same, per principal (its share, `maxSessionsPerPrincipal`);
 * - `<prefix><bucket.key>` (e.g. `mcpgate:rl:p:key:7Hq2xK9a`): GCRA theoretical arrival time (ms),
 *   PX = until the bucket is full again.
 *
 * One Lua script does the session check, the idle-deadline slide and the GCRA update of every
 * bucket, atomically: one round trip per request. Times come from the Redis server (`TIME`), so
 * instances with skewed clocks agree.
 */
export interface RedisStateStoreOptions {
  /** `redis://…` / `rediss://…`. Either this or `client`. */
  url?: string;
  /**
   * A client you own (not closed by `close()`). For fail-fast behaviour give it
   * `enableOfflineQueue: false` and `maxRetriesPerRequest: 1`, as the store does for a `url`.
   */
  client?: Redis;
  /** Key prefix (config `state.prefix`). Default "mcpgate:". */
  prefix?: string;
  /** Most live sessions; one more is refused (`SessionLimitError`). 0 = unbounded. Default 100 000. */
  maxSessions?: number;
  /** Most live sessions of one principal; one more is refused. Default: `defaultSessionsPerPrincipal`. */
  maxSessionsPerPrincipal?: number;
  /** Connection timeout for a `url`. Default 1000. */
  connectTimeoutMs?: number;
  /** A command not answered within this is failed (the gate answers 503). Default 1000. */
  commandTimeoutMs?: number;
  /** Told about connection errors (they recur while Redis is down; the client reconnects by itself). */
  onError?: (err: unknown) => void;
}

export interface RedisStateStore extends StateStore {
  init(): Promise<void>;
  sessionCount(): Promise<number>;
  close(): Promise<void>;
  readonly prefix: string;
}

// KEYS: [sessionKey, indexKey]? then bucket keys. ARGV: hasSession, sessionId, principal, idleTtlMs,
// principal set key, then (limit, windowMs, cost) per bucket. Same arithmetic as gcra.ts.
const ADMIT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local status = ''
local k = 1
if ARGV[1] == '1' then
  local rec = redis.call('HMGET', KEYS[1], 'p', 'd')
  if not rec[1] then return {'unknown'} end
  if rec[1] ~= ARGV[3] then return {'mismatch', rec[2] or ''} end
  local ttl = tonumber(ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[2])
  redis.call('ZADD', ARGV[5], now + ttl, ARGV[2])
  redis.call('PEXPIRE', ARGV[5], ttl)
  status = 'ok'
  k = 3
end
local n = #KEYS - k + 1
if n <= 0 then return {status} end
local tats = {}
local worst, worstWait, worstReset = 0, -1, 0
local tight, tightRem, tightReset = 0, -1, 0
for i = 0, n - 1 do
  local limit = tonumber(ARGV[6 + 3 * i])
  local window = tonumber(ARGV[7 + 3 * i])
  local cost = tonumber(ARGV[8 + 3 * i])
  local interval = window / limit
  local tat = tonumber(redis.call('GET', KEYS[k + i]) or '0')
  if tat < now then tat = now end
  local newTat = tat + interval * cost
  local allowAt = newTat - window
  if allowAt > now then
    if allowAt - now > worstWait then worst = i + 1; worstWait = allowAt - now; worstReset = tat - now end
  else
    tats[i + 1] = newTat
    local rem = math.floor((now + window - newTat) / interval + 1e-9)
    if tightRem < 0 or rem < tightRem then tight = i + 1; tightRem = rem; tightReset = newTat - now end
  end
end
if worst > 0 then return {status, '', 'limited', worst, math.ceil(worstWait), math.ceil(worstReset)} end
for i = 1, n do
  redis.call('SET', KEYS[k + i - 1], string.format('%.3f', tats[i]), 'PX', math.max(1, math.ceil(tats[i] - now)))
end
return {status, '', 'ok', tight, tightRem, math.ceil(tightReset)}
`;

// Room for one more session (shared by BIND and ROOM). KEYS[2] indexKey, KEYS[3] principal set;
// ARGV[5] maxSessions, ARGV[7] perPrincipal. Returns nil when there is room, else {scope, waitMs}.
const ROOM_FN = `
local function room(now)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local per = tonumber(ARGV[7])
  if per > 0 and redis.call('ZCARD', KEYS[3]) >= per then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {'principal', math.ceil(tonumber(first[2]) - now)}
  end
  local max = tonumber(ARGV[5])
  if max > 0 and redis.call('ZCARD', KEYS[2]) >= max then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {'global', math.ceil(tonumber(first[2]) - now)}
  end
  return nil
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// KEYS: sessionKey, indexKey, principal set. ARGV: sessionId, principal, display, idleTtlMs,
// maxSessions, principal-set key prefix, perPrincipal. Check and bind in one atomic step, so
// concurrent initializes of one principal cannot overshoot its share.
const BIND_LUA = `${ROOM_FN}
local ttl = tonumber(ARGV[4])
local previous = redis.call('HGET', KEYS[1], 'p')
if previous then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', ARGV[6] .. previous, ARGV[1])
end
local full = room(now)
if full then return full end
redis.call('HSET', KEYS[1], 'p', ARGV[2], 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('ZADD', KEYS[3], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
return {'ok'}
`;

// KEYS: (unused), indexKey, principal set. ARGV as BIND (only 5 and 7 are read).
const ROOM_LUA = `${ROOM_FN}
return room(now) or {'ok'}
`;

// KEYS: sessionKey, indexKey. ARGV: sessionId, principal-set key prefix.
const REMOVE_LUA = `
local p = redis.call('HGET', KEYS[1], 'p')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if p then redis.call('ZREM', ARGV[2] .. p, ARGV[1]) end
return 1
`;

// KEYS: indexKey.
const COUNT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
`;

type Arg = string | number;
type ScriptedRedis = Redis & {
  mcpgateAdmit(numKeys: number, ...args: Arg[]): Promise<Array<string | number>>;
  mcpgateBind(...args: Arg[]): Promise<Array<string | number>>;
  mcpgateRoom(...args: Arg[]): Promise<Array<string | number>>;
  mcpgateRemove(...args: Arg[]): Promise<number>;
  mcpgateCount(...args: Arg[]): Promise<number>;
};

function unavailable(err: unknown): McpGateError {
  if (err instanceof McpGateError) return err;
  // The driver's message names the host at most, never a credential in the URL.
  const msg = (err as Error)?.message ?? "error";
  return new McpGateError("ERR_STORE_UNAVAILABLE", `redis state: ${msg.replace(/\/\/[^@/]*@/, "//")}`, {
    cause: err,
  });
}

/**
 * Create the Redis state store. Call `await init()` before use (connects and fails with
 * `ERR_STORE_UNAVAILABLE` when Redis is unreachable). Afterwards, while Redis is down, every
 * call fails at once (no offline queue, one retry), so the gate answers 503, and the client
 * reconnects in the background (at most every second), so service resumes by itself.
 *
 * @example
 * const state = createRedisStateStore({ url: "redis://127.0.0.1:6379", prefix: "mcpgate:" });
 * await state.init();
 * const gate = createGate({ verifiers, publicUrl, state });
 */
export function createRedisStateStore(options: RedisStateStoreOptions): RedisStateStore {
  if (!options || (options.url === undefined) === (options.client === undefined)) {
    throw new McpGateError("ERR_INVALID_OPTION", "createRedisStateStore: give exactly one of url or client");
  }
  if (options.url !== undefined && !/^rediss?:\/\//.test(options.url)) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      "createRedisStateStore: url must be redis://… or rediss://…",
    );
  }
  const prefix = options.prefix ?? "mcpgate:";
  const maxSessions = options.maxSessions ?? 100_000;
  if (!Number.isInteger(maxSessions) || maxSessions < 0) {
    throw new McpGateError("ERR_INVALID_OPTION", "createRedisStateStore: maxSessions must be an integer ≥ 0");
  }
  const perPrincipal = options.maxSessionsPerPrincipal ?? defaultSessionsPerPrincipal(maxSessions || 100_000);
  if (!Number.isInteger(perPrincipal) || perPrincipal < 0) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      "createRedisStateStore: maxSessionsPerPrincipal must be an integer ≥ 0",
    );
  }
  const owned = options.client === undefined;
  const redis = (options.client ??
    new Redis(options.url!, {
      lazyConnect: true,
      connectTimeout: options.connectTimeoutMs ?? 1000,
      commandTimeout: options.commandTimeoutMs ?? 1000,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      // Reconnect forever, backing off to one attempt per second: recovery needs no operator.
      retryStrategy: (times: number) => Math.min(50 * times, 1000),
    })) as ScriptedRedis;
  if (owned) redis.on("error", (err: unknown) => options.onError?.(err));
  redis.defineCommand("mcpgateAdmit", { lua: ADMIT_LUA });
  redis.defineCommand("mcpgateBind", { lua: BIND_LUA, numberOfKeys: 3 });
  redis.defineCommand("mcpgateRoom", { lua: ROOM_LUA, numberOfKeys: 3 });
  redis.defineCommand("mcpgateRemove", { lua: REMOVE_LUA, numberOfKeys: 2 });
  redis.defineCommand("mcpgateCount", { lua: COUNT_LUA, numberOfKeys: 1 });
  const indexKey = `${prefix}sessions`;
  const sessionKeyPrefix = `${prefix}s:`;
  const principalKeyPrefix = `${prefix}ps:`;
  /** A `{scope, waitMs}` script answer as a refusal. */
  const refusal = (reply: Array<string | number>) => ({
    scope: (reply[0] === "principal" ? "principal" : "global") as "principal" | "global",
    retryAfterSec: Math.max(1, Math.ceil(Number(reply[1]) / 1000)),
  });

  return {
    prefix,
    async init() {
      if (!owned || redis.status !== "wait") return;
      try {
        await redis.connect();
      } catch (err) {
        redis.disconnect();
        throw unavailable(err);
      }
    },

    async admit(input: AdmitInput): Promise<AdmitResult> {
      const s = input.session;
      if (s && (s.id.length === 0 || s.id.length > MAX_SESSION_ID_LENGTH)) {
        return { session: { status: "unknown" } };
      }
      const keys: string[] = s ? [sessionKeyPrefix + s.id, indexKey] : [];
      const args: Arg[] = s
        ? ["1", s.id, s.principal, Math.max(1, Math.round(s.idleTtlMs)), principalKeyPrefix + s.principal]
        : ["0", "", "", 0, ""];
      for (const b of input.buckets) {
        keys.push(prefix + b.key);
        args.push(b.limit, Math.max(1, Math.round(b.windowMs)), b.cost ?? 1);
      }
      if (keys.length === 0) return {};
      let reply: Array<string | number>;
      try {
        reply = await redis.mcpgateAdmit(keys.length, ...keys, ...args);
      } catch (err) {
        throw unavailable(err);
      }
      const status = String(reply[0] ?? "");
      if (status === "unknown") return { session: { status: "unknown" } };
      if (status === "mismatch") {
        const display = String(reply[1] ?? "");
        return { session: { status: "mismatch", ...(display ? { ownerDisplay: display } : {}) } };
      }
      const out: AdmitResult = status === "ok" ? { session: { status: "ok" } } : {};
      if (reply.length > 2) {
        const bucket = input.buckets[Number(reply[3]) - 1]!;
        const rate: RateOutcome =
          reply[2] === "limited"
            ? { ok: false, bucket, retryAfterMs: Number(reply[4]), resetMs: Number(reply[5]) }
            : { ok: true, bucket, remaining: Number(reply[4]), resetMs: Number(reply[5]) };
        out.rate = rate;
      }
      return out;
    },

    async bindSession(sessionId: string, owner: SessionOwner, idleTtlMs: number): Promise<void> {
      if (sessionId.length === 0 || sessionId.length > MAX_SESSION_ID_LENGTH) {
        throw new McpGateError("ERR_INVALID_OPTION", "redis state: session id is empty or too long");
      }
      let reply: Array<string | number>;
      try {
        reply = await redis.mcpgateBind(
          sessionKeyPrefix + sessionId,
          indexKey,
          principalKeyPrefix + owner.principal,
          sessionId,
          owner.principal,
          owner.display ?? "",
          Math.max(1, Math.round(idleTtlMs)),
          maxSessions,
          principalKeyPrefix,
          perPrincipal,
        );
      } catch (err) {
        throw unavailable(err);
      }
      if (reply[0] !== "ok") {
        const r = refusal(reply);
        throw new SessionLimitError(r.scope, r.retryAfterSec);
      }
    },

    async sessionRoom(principal: string): Promise<SessionRoom> {
      let reply: Array<string | number>;
      try {
        reply = await redis.mcpgateRoom(
          `${sessionKeyPrefix}-`,
          indexKey,
          principalKeyPrefix + principal,
          "",
          "",
          "",
          0,
          maxSessions,
          "",
          perPrincipal,
        );
      } catch (err) {
        throw unavailable(err);
      }
      return reply[0] === "ok" ? { ok: true } : { ok: false, ...refusal(reply) };
    },

    async removeSession(sessionId: string): Promise<void> {
      try {
        await redis.mcpgateRemove(sessionKeyPrefix + sessionId, indexKey, sessionId, principalKeyPrefix);
      } catch (err) {
        throw unavailable(err);
      }
    },

    /** Sessions whose idle deadline has not passed (exact up to clock resolution; one sorted-set read). */
    async sessionCount(): Promise<number> {
      try {
        return Number(await redis.mcpgateCount(indexKey));
      } catch (err) {
        throw unavailable(err);
      }
    },

    async close() {
      if (!owned) return;
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
