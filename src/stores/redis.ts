/**
 * `mcpgate/stores/redis`: shared state (session bindings, rate-limit buckets) and the key
 * revocation feed on Redis. The only entry point that loads `ioredis`.
 *
 * @example
 * import { createRedisStateStore } from "mcpgate/stores/redis";
 * const state = createRedisStateStore({ url: "redis://127.0.0.1:6379", prefix: "mcpgate:" });
 * await state.init();
 */

export { createRedisGuardStore, type RedisGuardStore, type RedisGuardStoreOptions } from "./redis-guard.js";
export { createRedisKeyEvents, type RedisKeyEvents, type RedisKeyEventsOptions } from "./redis-key-events.js";
export { createRedisStateStore, type RedisStateStore, type RedisStateStoreOptions } from "./redis-state.js";
