import { Redis } from "ioredis";
import { McpGateError } from "../core/errors.js";

/**
 * The credential-guessing guard's counters on Redis, so that a lockout made by one gateway
 * instance holds on all of them. One Lua script per failure: check the lock, count, and lock when
 * the threshold is reached, atomically. Keys: `<prefix>guard:{<source>}:fail` (the window's
 * count, expiring with the window) and `<prefix>guard:{<source>}:lock` (expiring with the lockout).
 * Satisfies observe/guard.ts's `GuardStore` structurally (stores sit below observe).
 */

export interface RedisGuardStoreOptions {
  /** `redis://127.0.0.1:6379`. Ignored when `client` is given. */
  url?: string;
  /** An existing ioredis client (not closed by `close()`). */
  client?: Redis;
  /** Key prefix shared with the rest of mcpgate's Redis state. Default "mcpgate:". */
  prefix?: string;
  /** Per-command deadline when the store creates the client. Default 1000 ms. */
  commandTimeoutMs?: number;
}

export interface RedisGuardStore {
  recordFailure(
    key: string,
    limits: { failures: number; windowMs: number; lockoutMs: number },
  ): Promise<{ lockedMs: number; created: boolean }>;
  lockedMs(key: string): Promise<number>;
  close(): Promise<void>;
}

// KEYS[1] lock, KEYS[2] count; ARGV failures, windowMs, lockoutMs. Returns {lockedMs, created}.
const RECORD_FAILURE = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then return {ttl, 0} end
local c = redis.call('INCR', KEYS[2])
if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if c >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[3])
  return {tonumber(ARGV[3]), 1}
end
return {0, 0}
`;

type GuardClient = Redis & {
  mcpgateGuardFailure(lock: string, count: string, ...args: string[]): Promise<[number, number]>;
};

function unavailable(err: unknown): McpGateError {
  // ioredis messages name the host and the command, never a credential of ours.
  return new McpGateError(
    "ERR_STORE_UNAVAILABLE",
    `redis guard store: ${(err as Error)?.message ?? "error"}`,
    {
      cause: err,
    },
  );
}

/**
 * Create the Redis guard store.
 *
 * @example
 * const guard = createGuard({ store: createRedisGuardStore({ url: "redis://127.0.0.1:6379" }) });
 */
export function createRedisGuardStore(options: RedisGuardStoreOptions): RedisGuardStore {
  if (!options?.client && (typeof options?.url !== "string" || !/^rediss?:\/\//.test(options.url)))
    throw new TypeError("createRedisGuardStore: url must be redis://… or rediss://… (or pass client)");
  const prefix = options.prefix ?? "mcpgate:";
  const owns = !options.client;
  const client = (options.client ??
    new Redis(options.url!, {
      maxRetriesPerRequest: 1,
      commandTimeout: options.commandTimeoutMs ?? 1000,
      enableOfflineQueue: true,
    })) as GuardClient;
  if (owns) client.on("error", () => {});
  if (typeof client.mcpgateGuardFailure !== "function")
    client.defineCommand("mcpgateGuardFailure", { numberOfKeys: 2, lua: RECORD_FAILURE });
  const keys = (source: string) =>
    [`${prefix}guard:{${source}}:lock`, `${prefix}guard:{${source}}:fail`] as const;

  return {
    async recordFailure(source, limits) {
      const [lock, count] = keys(source);
      try {
        const [lockedMs, created] = await client.mcpgateGuardFailure(
          lock,
          count,
          String(limits.failures),
          String(Math.ceil(limits.windowMs)),
          String(Math.ceil(limits.lockoutMs)),
        );
        return { lockedMs: Number(lockedMs), created: Number(created) === 1 };
      } catch (err) {
        throw unavailable(err);
      }
    },
    async lockedMs(source) {
      try {
        const ttl = await client.pttl(keys(source)[0]);
        return Math.max(ttl, 0);
      } catch (err) {
        throw unavailable(err);
      }
    },
    async close() {
      if (owns) await client.quit().catch(() => client.disconnect());
    },
  };
}
