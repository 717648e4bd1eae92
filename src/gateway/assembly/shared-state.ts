import type { CredentialVerifier } from "../../authn/verifier.js";
import type { GatewayConfig } from "../../config.js";
import type { StateStore } from "../../core/contracts.js";
import type { Identity } from "../../core/identity.js";
import type { Logger } from "../../observe/logger.js";
import { createMemoryStateStore } from "../../stores/memory-state.js";

/** The gateway's state store, plus what must be released with it. */
export interface BuiltState {
  state: StateStore;
  /** "memory" or "redis", for the startup log. */
  kind: "memory" | "redis";
  /**
   * Gate `watchers`: each stored-key verifier's `watch`, so an open stream ends within 1 s of its
   * key's revocation, at once on every instance when the Redis revocation feed is on (issue 14 item 5).
   */
  watchers: ReadonlyArray<(auth: { identity: Identity }, until: AbortSignal) => AbortSignal | undefined>;
  close(): Promise<void>;
}

interface Watching extends CredentialVerifier {
  watch(identity: Identity, until: AbortSignal): AbortSignal | undefined;
}

function streamWatchers(verifiers: readonly CredentialVerifier[]): BuiltState["watchers"] {
  return verifiers
    .filter((v): v is Watching => typeof (v as Partial<Watching>).watch === "function")
    .map((v) => (auth: { identity: Identity }, until: AbortSignal) => v.watch(auth.identity, until));
}

interface Invalidating extends CredentialVerifier {
  invalidate(id?: string): void;
}

function isInvalidating(v: CredentialVerifier): v is Invalidating {
  return typeof (v as Partial<Invalidating>).invalidate === "function";
}

/**
 * Build the state store `state`/`sessions` ask for: in-process memory by default, Redis when
 * `state.redis` is set (bindings and buckets shared by every instance). With Redis, the stored-key
 * verifier also listens to the revocation feed, so `mcpgate keys revoke` reaches every instance
 * at once instead of after its cache lifetime. Drivers are imported only when used.
 *
 * @example const { state, close } = await buildState(config, { verifiers, logger });
 */
export async function buildState(
  config: GatewayConfig,
  ctx: { verifiers: readonly CredentialVerifier[]; logger: Logger },
): Promise<BuiltState> {
  const redisUrl = config.state.redis;
  if (!redisUrl) {
    return {
      kind: "memory",
      state: createMemoryStateStore({
        maxSessions: config.sessions.max,
        ...(config.sessions.perPrincipal !== undefined
          ? { maxSessionsPerPrincipal: config.sessions.perPrincipal }
          : {}),
      }),
      watchers: streamWatchers(ctx.verifiers),
      close: async () => {},
    };
  }
  const prefix = config.state.prefix;
  const { createRedisStateStore } = await import("../../stores/redis-state.js");
  let lastError = 0;
  const state = createRedisStateStore({
    url: redisUrl,
    prefix,
    maxSessions: config.sessions.max,
    ...(config.sessions.perPrincipal !== undefined
      ? { maxSessionsPerPrincipal: config.sessions.perPrincipal }
      : {}),
    onError: (err) => {
      // ioredis reports every failed reconnect; one line per 10 s is enough to see the outage.
      if (Date.now() - lastError < 10_000) return;
      lastError = Date.now();
      ctx.logger.error(
        { err: (err as Error)?.message },
        "state store (redis) unavailable: MCP requests get 503",
      );
    },
  });
  await state.init();
  const closers: Array<() => Promise<void>> = [() => state.close()];
  const keyVerifiers = ctx.verifiers.filter((v) => v.kind === "api_key").filter(isInvalidating);
  if (keyVerifiers.length > 0) {
    const { createRedisKeyEvents } = await import("../../stores/redis-key-events.js");
    const events = createRedisKeyEvents({ url: redisUrl, prefix });
    try {
      // `undefined` after a reconnect: messages may have been missed, drop every cached key.
      await events.subscribe((id) => {
        for (const v of keyVerifiers) v.invalidate(id);
      });
    } catch (err) {
      await state.close();
      throw err;
    }
    closers.push(() => events.close());
  }
  return {
    kind: "redis",
    state,
    watchers: streamWatchers(ctx.verifiers),
    async close() {
      await Promise.all(closers.map((c) => c()));
    },
  };
}
