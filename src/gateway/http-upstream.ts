import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { IncomingHttpHeaders } from "node:http";
import { Agent, errors as undiciErrors } from "undici";
import type { Denial } from "../core/outcome.js";
import type { Entry, ForwardResult } from "../http/front-door.js";
import type { Era } from "../mcp/era.js";
import { SessionWireIds } from "../mcp/wire-ids.js";
import type { ForwardContext, Upstream } from "./upstream.js";

export interface HttpUpstreamOptions {
  url: string;
  /** The gateway's own upstream credential and other fixed headers (never the client's). */
  headers?: Record<string, string>;
  timeoutMs?: number;
  connections?: number;
  /**
   * Sessions whose request ids are tracked at once: set it to the gate's `sessions.max` (default
   * 100 000), so no live session's map is ever pushed out by another caller's sessions.
   */
  maxSessions?: number;
  /** A session's id map is forgotten after this long unused: the gate's `sessions.idleTtl` (default 30 min). */
  sessionIdleTtlMs?: number;
  /**
   * Requests (POST, DELETE) one caller (principal) may have in flight once the pool is busy. A caller
   * may go past it while the pool has room, but the last `maxInFlightPerCaller` connections are kept
   * for callers under their share: past that, one more request of a caller at its share gets 429
   * with `Retry-After`, so one caller's slow calls never hold every connection. Default: a quarter of
   * `connections`, at least 2.
   */
  maxInFlightPerCaller?: number;
  /**
   * GET streams one caller may hold open at once (each holds an upstream connection for its life).
   * Streams have a pool of their own, so they never take the connections requests need. Default 1000;
   * the gateway sets it to a principal's share of live sessions (`sessions.perPrincipal`). At most
   * `maxSessions` streams in all.
   */
  maxStreamsPerCaller?: number;
  /**
   * Longest silence of a POST's SSE answer (nothing from the upstream while the client keeps up):
   * past it the gateway answers the requests still unanswered with 504-class JSON-RPC errors and
   * ends the stream, freeing the connection and the caller's share. Default 5 min; 0: none.
   */
  streamIdleMs?: number;
}

/** See `HttpUpstreamOptions.streamIdleMs`. */
export const DEFAULT_STREAM_IDLE_MS = 5 * 60_000;

/**
 * How many of something each caller holds. `max`: most in all ("full" past it). `share`: what a
 * caller may hold — strictly, or, with a `pool` (a connection pool whose excess requests queue),
 * only once the pool is busy: a caller at its share is let in while more than `share` connections
 * are free (work-conserving: a lone caller may use most of the pool, others always find room).
 */
function callerShare(options: { share: number; pool?: number; max?: number }) {
  const { share, pool, max } = options;
  const held = new Map<string, number>();
  let total = 0;
  return {
    take(caller: string): "ok" | "caller" | "full" {
      const n = held.get(caller) ?? 0;
      if (max !== undefined && total >= max) return "full";
      if (n >= share && (pool === undefined || total >= pool - share)) return "caller";
      held.set(caller, n + 1);
      total++;
      return "ok";
    },
    release(caller: string): void {
      const n = held.get(caller);
      if (n === undefined) return;
      total--;
      if (n <= 1) held.delete(caller);
      else held.set(caller, n - 1);
    },
  };
}

/** What the gateway's own requests accept (the MCP POST rule: both). */
const ACCEPT_BOTH = "application/json, text/event-stream";

/** Client request headers relayed upstream (allow-list: everything else, incl. Authorization and cookies, stays here). */
const FORWARD_HEADERS = [
  "accept",
  "content-type",
  "mcp-session-id",
  "mcp-protocol-version",
  "last-event-id",
  "mcp-method",
  "mcp-name",
  "user-agent",
];

function upstreamHeaders(
  incoming: IncomingHttpHeaders,
  /** Lower-case names already. */
  fixed: Record<string, string>,
  extra: Record<string, string>,
  era: Era,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARD_HEADERS) {
    const v = incoming[name];
    if (typeof v === "string") out[name] = v;
  }
  for (const name in incoming) {
    // 2026-07-28: unrecognised Mcp-Param-* headers MUST be forwarded.
    const v = incoming[name];
    if (name.startsWith("mcp-param-") && typeof v === "string") out[name] = v;
  }
  // 2026-07-28 has no sessions (servers ignore Mcp-Session-Id), and the gate checks bindings only
  // for 2025-era requests: a 2026-era request must not carry a session id past the gate to a
  // dual-era upstream that would honour it.
  if (era === "2026") delete out["mcp-session-id"];
  Object.assign(out, fixed);
  for (const name in extra) out[name.toLowerCase()] = extra[name]!;
  return out;
}

/**
 * Relay to an HTTP MCP server through a pooled keep-alive undici Agent (which never follows a
 * redirect). Every forwarded request carries an id unique in its session (mcp/wire-ids.ts), mapped
 * back on the answer; the answer is written by the request's response owner, which filters lists,
 * maps statuses and headers, and stops reading the upstream while the client does not read.
 *
 * @example const up = createHttpUpstream({ url: "http://127.0.0.1:3000/mcp", timeoutMs: 30_000 });
 */
export function createHttpUpstream(options: HttpUpstreamOptions): Upstream {
  const target = new URL(options.url);
  const timeoutMs = options.timeoutMs ?? 30_000;
  // The gateway's own headers, with lower-case names once (every request carries them).
  const fixed = Object.fromEntries(
    Object.entries(options.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
  );
  const connections = options.connections ?? 128;
  const pooled = {
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs,
    connectTimeout: Math.min(timeoutMs, 10_000),
    pipelining: 1,
  };
  const agent = new Agent({ ...pooled, connections });
  // Standalone GET streams hold their connection for as long as they last: in the requests' pool,
  // as many open streams as connections would leave every POST waiting for ever. They get a pool of
  // their own, bounded per caller instead.
  const maxStreams = options.maxSessions ?? 100_000;
  const streamAgent = new Agent({ ...pooled, connections: maxStreams });
  // Requests beyond the pool's connections wait in undici's queue for one to free: an answer comes.
  const requestShare = callerShare({
    share: options.maxInFlightPerCaller ?? Math.max(2, Math.floor(connections / 4)),
    pool: connections,
  });
  const streamShare = callerShare({
    share: options.maxStreamsPerCaller ?? 1000,
    max: maxStreams,
  });
  // setTimeout holds at most 2^31-1 ms (~24.8 days).
  const streamIdleMs = Math.min(options.streamIdleMs ?? DEFAULT_STREAM_IDLE_MS, 2 ** 31 - 1);
  const path = `${target.pathname}${target.search}`;
  const sessions = new SessionWireIds({
    prefix: `mcpgate-${randomBytes(4).toString("hex")}-`,
    maxSessions: options.maxSessions ?? 100_000,
    idleTtlMs: options.sessionIdleTtlMs ?? 30 * 60_000,
  });

  /** Take the caller's share of a connection (a stream's, or a request's): undefined, or why not. */
  function reserve(entry: Entry): Denial | undefined {
    const stream = entry.admission.method === "GET";
    const taken = (stream ? streamShare : requestShare).take(entry.admission.identity.principal);
    if (taken === "ok") return undefined;
    return taken === "full"
      ? { kind: "capacity", message: "too many open streams" }
      : { kind: "in_flight_limit", what: stream ? "streams" : "requests", retryAfterSec: 1 };
  }

  function unreserve(entry: Entry): void {
    const share = entry.admission.method === "GET" ? streamShare : requestShare;
    share.release(entry.admission.identity.principal);
  }

  /** Relay one request; the caller's share was taken by the mount (`share`, before its identity hook). */
  async function forward(ctx: ForwardContext): Promise<ForwardResult> {
    const { req, admission, plan, owner } = ctx;
    const dispatcher = admission.method === "GET" ? streamAgent : agent;
    const started = performance.now();
    const method = admission.method as "GET" | "POST" | "DELETE";
    const sessionId = admission.era === "2025" ? admission.sessionId : undefined;
    const ids = sessionId === undefined ? sessions.forRequest() : sessions.forSession(sessionId, Date.now());
    let body: string | undefined;
    let requests: readonly string[] | undefined;
    if (method === "POST") {
      const out = ids.outbound(plan.forward, ctx.meta);
      if (out.messages.length === 0) {
        // Only a cancellation of a request this gateway never forwarded: nothing to say upstream.
        owner.answerLocally();
        return { result: "ok" };
      }
      body = JSON.stringify(admission.batch ? out.messages : out.messages[0]);
      requests = out.wireIds;
    }
    // undici takes an EventEmitter as its abort signal (cheaper than an AbortSignal on Node 20):
    // the client leaving, or its credential ending, aborts the upstream request and its body.
    const signal = Object.assign(new EventEmitter(), { aborted: false });
    const offAbort = owner.onAbort(() => {
      signal.aborted = true;
      signal.emit("abort");
    });
    let upstream: Awaited<ReturnType<Agent["request"]>>;
    try {
      upstream = await dispatcher.request({
        origin: target.origin,
        path,
        method,
        headers: upstreamHeaders(req.headers, fixed, ctx.headers, admission.era),
        ...(body !== undefined ? { body } : {}),
        signal,
        headersTimeout: timeoutMs,
        // SSE streams may idle for a long time; other bodies are bounded by the owner's idle timer.
        bodyTimeout: 0,
      });
    } catch (err) {
      const upstreamMs = performance.now() - started;
      offAbort();
      if (owner.aborted) {
        owner.refuse({ kind: "credential_expired" });
        return { result: "aborted", upstreamMs };
      }
      const timeout =
        err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError;
      owner.refuse(timeout ? { kind: "upstream_timeout" } : { kind: "upstream_unavailable" });
      return { result: timeout ? "timeout" : "unavailable", upstreamMs };
    }
    const upstreamMs = performance.now() - started;
    if (sessionId && ((method === "DELETE" && upstream.statusCode < 300) || upstream.statusCode === 404))
      sessions.forget(sessionId);
    // Requests the gateway gives up in a session (their stream went quiet, or was cut) may still
    // be at work upstream: each is cancelled there (MCP cancellation, fire and forget).
    const onGiveUp =
      sessionId === undefined
        ? undefined
        : (wires: string[]) => {
            for (const requestId of wires)
              tellUpstream(
                "POST",
                ctx,
                { "mcp-session-id": sessionId, "content-type": "application/json", accept: ACCEPT_BOTH },
                JSON.stringify({
                  jsonrpc: "2.0",
                  method: "notifications/cancelled",
                  params: { requestId, reason: "the gateway gave up the answer" },
                }),
              );
          };
    const result = await owner.relay(
      { status: upstream.statusCode, headers: upstream.headers, body: upstream.body },
      ids,
      {
        idleTimeoutMs: timeoutMs,
        streamIdleMs,
        ...(requests ? { requests } : {}),
        ...(onGiveUp ? { onGiveUp } : {}),
      },
    );
    // A session the upstream minted but the gate would not bind (the caller's share or the store
    // was full: issue 14 item 3; or the store was down) never reaches the client: end it upstream
    // too, rather than leave it to the upstream's idle timeout.
    const minted = upstream.headers["mcp-session-id"];
    if (result === "refused" && admission.initialize && typeof minted === "string")
      tellUpstream("DELETE", ctx, { "mcp-session-id": minted });
    offAbort();
    return { result, upstreamMs };
  }

  /**
   * Tell the upstream something about `ctx`'s session on the gateway's behalf, in the background,
   * with the request's own credentials and protocol version: its answer is read and dropped, a
   * failure ignored (what is told is advisory: a DELETE, a cancellation).
   */
  function tellUpstream(
    method: "POST" | "DELETE",
    ctx: ForwardContext,
    headers: Record<string, string>,
    body?: string,
  ): void {
    const version = ctx.req.headers["mcp-protocol-version"];
    const relayed = typeof version === "string" ? { "mcp-protocol-version": version } : {};
    agent
      .request({
        origin: target.origin,
        path,
        method,
        headers: { ...upstreamHeaders(relayed, fixed, ctx.headers, "2025"), ...headers },
        ...(body !== undefined ? { body } : {}),
        headersTimeout: timeoutMs,
      })
      .then(
        (r) => r.body.dump().catch(() => {}),
        () => {},
      );
  }

  return {
    share: { take: reserve, release: unreserve },
    forward,
    async close() {
      // In-flight streams were ended by the server already; never wait on a long-lived SSE stream.
      await Promise.all([agent.destroy(), streamAgent.destroy()]);
    },
  };
}
