import { Redis } from "ioredis";
import { McpGateError } from "../core/errors.js";

/**
 * Revocation feed over Redis pub/sub (channel `<prefix>keys:revoked`, message = key id). When
 * `state.redis` is configured, `mcpgate keys revoke|rotate` publishes, and every gateway's
 * stored-key verifier drops that id from its cache at once, instead of waiting for the cache
 * lifetime. A subscriber that reconnects may have missed messages, so it reports `undefined`
 * ("invalidate everything") after every reconnect.
 */

export interface RedisKeyEventsOptions {
  /** `redis://127.0.0.1:6379`. */
  url: string;
  /** Key/channel prefix shared with the rest of mcpgate's Redis state. Default "mcpgate:". */
  prefix?: string;
  /** Connection timeout. Default 3000. */
  connectTimeoutMs?: number;
}

export interface RedisKeyEvents {
  readonly channel: string;
  /** Announce that a key's record changed (revoked or rotated). */
  publishRevoked(id: string): Promise<void>;
  /** Listen; `handler(undefined)` means "messages may have been missed: drop every cached key". */
  subscribe(handler: (id: string | undefined) => void): Promise<void>;
  close(): Promise<void>;
}

/**
 * Create the feed. Connections open lazily: publishing opens one, subscribing opens another (a
 * subscribed Redis connection cannot publish).
 *
 * @example
 * const events = createRedisKeyEvents({ url: "redis://127.0.0.1:6379" });
 * await events.subscribe((id) => verifier.invalidate(id));
 */
export function createRedisKeyEvents(options: RedisKeyEventsOptions): RedisKeyEvents {
  if (typeof options?.url !== "string" || !/^rediss?:\/\//.test(options.url)) {
    throw new McpGateError("ERR_INVALID_OPTION", "redis key events: url must be redis://… or rediss://…");
  }
  const channel = `${options.prefix ?? "mcpgate:"}keys:revoked`;
  const connectTimeout = options.connectTimeoutMs ?? 3000;
  let publisher: Redis | undefined;
  let subscriber: Redis | undefined;

  const unavailable = (err: unknown) =>
    new McpGateError("ERR_STORE_UNAVAILABLE", `redis key events: ${(err as Error)?.message ?? "error"}`, {
      cause: err,
    });

  return {
    channel,
    async publishRevoked(id: string) {
      if (!publisher) {
        // The CLI publishes once and exits: no retry loop, fail fast when Redis is down.
        publisher = new Redis(options.url, {
          lazyConnect: true,
          connectTimeout,
          maxRetriesPerRequest: 1,
          retryStrategy: () => null,
        });
        publisher.on("error", () => {});
      }
      try {
        if (publisher.status === "wait") await publisher.connect();
        await publisher.publish(channel, id);
      } catch (err) {
        throw unavailable(err);
      }
    },
    async subscribe(handler) {
      if (subscriber) throw new McpGateError("ERR_INVALID_OPTION", "redis key events: already subscribed");
      const sub = new Redis(options.url, { lazyConnect: true, connectTimeout, maxRetriesPerRequest: null });
      subscriber = sub;
      // Reconnects are automatic (ioredis re-subscribes); errors in between are expected, not fatal.
      sub.on("error", () => {});
      let first = true;
      sub.on("ready", () => {
        if (!first) handler(undefined);
        first = false;
      });
      sub.on("message", (ch: string, message: string) => {
        if (ch === channel) handler(message);
      });
      try {
        await sub.connect();
        await sub.subscribe(channel);
      } catch (err) {
        subscriber = undefined;
        sub.disconnect();
        throw unavailable(err);
      }
    },
    async close() {
      const p = publisher;
      const s = subscriber;
      publisher = undefined;
      subscriber = undefined;
      await Promise.all([p?.quit().catch(() => p.disconnect()), s?.quit().catch(() => s.disconnect())]);
    },
  };
}
