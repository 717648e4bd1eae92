import type { Denial } from "../core/outcome.js";
import type { Entry, ForwardResult } from "../http/front-door.js";

/**
 * Where admitted requests go: an HTTP MCP server (undici) or a stdio child process. The front door
 * does everything before this point (auth, session check, policy); an upstream only relays, and
 * writes nothing itself: the entry's response owner answers the client.
 */
export interface Upstream {
  /**
   * What a request holds of this upstream (a caller's share of its connections), taken by the
   * mount before anything is spent on the request — the identity hook may call a token endpoint —
   * and given back once the forward settles (gateway/server.ts). Optional.
   */
  readonly share?: UpstreamShare;
  /** Relay one admitted request; the answer goes through `ctx.owner`. Never throws after writing. */
  forward(ctx: ForwardContext): Promise<ForwardResult>;
  /**
   * Shutdown has begun: end long-lived streams (standalone GET SSE) so that only real in-flight
   * requests hold the grace period. Optional.
   */
  drain?(): void;
  close(): Promise<void>;
}

/** An admitted request on its way upstream, with what the hooks added. */
export interface ForwardContext extends Entry {
  /**
   * Extra upstream request headers: the caller's identity for the upstream (identity hook, e.g. an
   * assertion in `Authorization`) and W3C `traceparent` (tracing). HTTP upstreams only; added last,
   * so they replace a relayed or configured header of the same name. Hooks add to this object.
   */
  readonly headers: Record<string, string>;
  /** Extra `params._meta` entries for every forwarded request (stdio: `traceparent`). */
  readonly meta: Record<string, string>;
  /**
   * The identity environment of a stdio child, made only when one is started (a session's, or a
   * pooled 2026-era one): requests that start no child sign nothing. Throws when it cannot be made.
   */
  spawnEnv?: () => Promise<Record<string, string>>;
}

/** See `Upstream.share`. */
export interface UpstreamShare {
  /** Take the request's share: undefined when taken, else the refusal to answer. */
  take(entry: Entry): Denial | undefined;
  /** Give back what `take` took for `entry`. */
  release(entry: Entry): void;
}

/** The upstream identity hook's answer (see `Mount.identity`). */
export type UpstreamIdentity =
  | {
      ok: true;
      /** Extra HTTP headers for the upstream request. */
      headers?: Record<string, string>;
      /** Extra environment for a stdio child (set at spawn; children are per session). */
      env?: Record<string, string>;
      /** The same, made only when a child is started (see `ForwardContext.spawnEnv`). */
      spawnEnv?: () => Promise<Record<string, string>>;
      /** Epoch seconds after which the conveyed identity is no longer valid: open streams end then. */
      expiresAt?: number;
    }
  | { ok: false; reason: string };
