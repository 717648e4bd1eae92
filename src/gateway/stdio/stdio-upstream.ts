import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { renderDenial } from "../../core/challenge.js";
import { redactSessionId } from "../../gate/gate.js";
import type { Logger } from "../../observe/logger.js";
import type { ForwardContext, ForwardOutcome, Upstream } from "../upstream.js";
import { buildChildEnv } from "./child-process.js";
import { type ChildSupervisor, createChildSupervisor } from "./children.js";
import { createStdioPool, initializeChild, type StdioPool } from "./pool.js";
import { accepts, type Channel, type ChildRelay, createSseChannel, openChannel } from "./relay.js";

export interface StdioUpstreamOptions {
  /** The program and its arguments, e.g. ["npx", "-y", "some-mcp-server"]. */
  command: readonly string[];
  logger: Logger;
  /** Extra variables for the child (upstream.env). */
  env?: Readonly<Record<string, string>>;
  /** Extra names copied from the gateway's environment (upstream.envAllow). */
  envAllow?: readonly string[];
  /** The gateway's environment (default process.env); only allow-listed names reach the child. */
  parentEnv?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Most children alive at once, sessions and pool together (default 100); beyond: 503. */
  maxChildren?: number;
  /** Children kept for 2026-era stateless requests (default 4). */
  poolSize?: number;
  /** A session's child with no request for this long is ended (default 30 min). */
  idleTtlMs?: number;
  /** How long a new child may take to answer `initialize` (default 30 s). */
  initTimeoutMs?: number;
  /** Between SIGTERM and SIGKILL when a child is ended (default 2 s). */
  killGraceMs?: number;
  /**
   * Fresh children kept started but unused, so that `initialize` does not wait for a process to
   * boot (default 1; 0 turns it off). A spare has never served anyone: callers still never share
   * a process. Spares count towards `maxChildren` and give way to sessions.
   */
  spareChildren?: number;
}

/** A stdio upstream, with introspection for tests and metrics. */
export interface StdioUpstream extends Upstream {
  /** PIDs of the live children (sessions and pool). */
  childPids(): number[];
  /** PID of the child serving a session, if any. */
  sessionPid(sessionId: string): number | undefined;
  sessionCount(): number;
  /** PIDs of the started, never used spare children. */
  sparePids(): number[];
}

interface Session {
  id: string;
  principal: string;
  relay: ChildRelay;
  tag: string;
}

/** The `Mcp-Session-Id` header of a request, when present. */
function sessionHeader(req: IncomingMessage): string | undefined {
  const v = req.headers["mcp-session-id"];
  return typeof v === "string" ? v : undefined;
}

/** SDK-server-compatible JSON-RPC error reply without id (transport-level refusals). */
function rpcRefusal(res: ServerResponse, status: number, code: number, message: string): void {
  if (res.headersSent) return;
  res
    .writeHead(status, { "content-type": "application/json" })
    .end(JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null }));
}

/**
 * Put a stdio MCP server behind the gateway: one child process per 2025-era session (spawned on
 * `initialize`, ended on DELETE, idle timeout, crash or shutdown), a small pool for 2026-era
 * stateless requests. The gateway speaks Streamable HTTP to the client the way the SDK's server
 * transport does and relays JSON-RPC to the child's stdin/stdout.
 *
 * @example
 * const up = createStdioUpstream({ command: ["npx", "-y", "@modelcontextprotocol/server-everything"], logger });
 */
export function createStdioUpstream(options: StdioUpstreamOptions): StdioUpstream {
  if (!Array.isArray(options.command) || options.command.length === 0 || !options.command[0]) {
    throw new TypeError("createStdioUpstream: command must be a non-empty array");
  }
  const { logger } = options;
  const maxChildren = options.maxChildren ?? 100;
  const idleTtlMs = options.idleTtlMs ?? 30 * 60_000;
  const initTimeoutMs = options.initTimeoutMs ?? 30_000;
  const killGraceMs = options.killGraceMs ?? 2_000;
  const env = buildChildEnv(options.parentEnv ?? process.env, {
    ...(options.envAllow ? { allow: options.envAllow } : {}),
    ...(options.env ? { set: options.env } : {}),
  });
  const sessions = new Map<string, Session>();
  /** Children spawned for a session whose `initialize` is not answered yet. */
  let starting = 0;
  let closing = false;
  const children: ChildSupervisor = createChildSupervisor({
    command: options.command,
    env,
    ...(options.cwd ? { cwd: options.cwd } : {}),
    logger,
    maxChildren,
    spareChildren: options.spareChildren ?? 1,
    inUse: () => sessions.size + starting + pool.size(),
  });
  const pool: StdioPool = createStdioPool({
    size: options.poolSize ?? 4,
    initTimeoutMs,
    killGraceMs,
    canSpawn: () => !closing && children.makeRoom(),
    startChild: children.start,
  });

  async function endSession(s: Session, why: string): Promise<void> {
    if (sessions.get(s.id) !== s) return;
    sessions.delete(s.id);
    logger.debug({ upstream: s.tag, pid: s.relay.child.pid, why }, "stdio session ended");
    await s.relay.child.terminate(killGraceMs);
    children.refill();
  }

  children.refill();

  const sweepMs = Math.max(100, Math.min(30_000, Math.floor(idleTtlMs / 2)));
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const s of sessions.values()) {
      if (s.relay.busy === 0 && now - s.relay.lastActive > idleTtlMs) void endSession(s, "idle");
    }
    pool.sweep(now, idleTtlMs);
  }, sweepMs);
  sweeper.unref();

  async function startSession(ctx: ForwardContext, started: number): Promise<ForwardOutcome> {
    const { req, res, admission } = ctx;
    const elapsed = () => performance.now() - started;
    if (admission.messages.length !== 1) {
      await ctx.onHead(400, undefined);
      rpcRefusal(res, 400, -32600, "Invalid Request: Only one initialization request is allowed");
      return { status: 400, upstreamMs: elapsed(), result: "error" };
    }
    if (closing || !children.makeRoom()) {
      await ctx.onHead(503, undefined);
      const spec = renderDenial({ kind: "capacity", message: "no stdio upstream slot free" });
      res.writeHead(spec.status, spec.headers).end(spec.body);
      return { status: 503, upstreamMs: elapsed(), result: "error" };
    }
    const id = randomUUID();
    const tag = redactSessionId(id);
    let relay: ChildRelay;
    try {
      relay = children.acquire(tag, () => {
        if (sessions.get(id)?.relay === relay) sessions.delete(id);
      });
    } catch (err) {
      logger.error({ upstream: tag, err: (err as Error).message }, "stdio upstream could not start");
      return { status: 502, upstreamMs: elapsed(), result: "unavailable" };
    }
    const onClientGone = () => {
      if (!sessions.has(id)) void relay.child.terminate(0);
    };
    res.once("close", onClientGone);
    starting++;
    children.refill();
    let init: Awaited<ReturnType<typeof initializeChild>>;
    try {
      init = await initializeChild(relay, admission.messages[0]!.raw, initTimeoutMs);
    } finally {
      starting--;
      res.off("close", onClientGone);
    }
    const upstreamMs = elapsed();
    if (!init.ok || res.destroyed) {
      void relay.child.terminate(killGraceMs);
      if (res.destroyed) return { status: 499, upstreamMs, result: "aborted" };
      const timeout = !init.ok && init.timeout;
      return { status: timeout ? 504 : 502, upstreamMs, result: timeout ? "timeout" : "unavailable" };
    }
    // A child that refuses initialize gets no session: relay its error and end it.
    const minted = init.accepted && relay.child.alive;
    if (minted) sessions.set(id, { id, principal: admission.identity.principal, relay, tag });
    else void relay.child.terminate(killGraceMs);
    const headers: Record<string, string> = minted ? { "mcp-session-id": id } : {};
    try {
      await ctx.onHead(200, minted ? id : undefined);
    } catch {
      // The gate could not bind the new session (state store down): end it, answer nothing.
      sessions.delete(id);
      void relay.child.terminate(killGraceMs);
      return { status: 503, upstreamMs, result: "state_unavailable" };
    }
    const channel = openChannel(req, res, headers);
    for (const r of admission.localResponses) channel.send(JSON.stringify(r));
    channel.send(init.text);
    channel.close();
    if (minted) logger.debug({ upstream: tag, pid: relay.child.pid }, "stdio session started");
    return { status: 200, upstreamMs, result: "ok" };
  }

  /** Find the caller's session; answers 400/404 itself when there is none. */
  async function lookup(ctx: ForwardContext): Promise<Session | undefined> {
    const sid = sessionHeader(ctx.req);
    if (sid === undefined) {
      await ctx.onHead(400, undefined);
      rpcRefusal(ctx.res, 400, -32000, "Bad Request: Mcp-Session-Id header is required");
      return undefined;
    }
    const s = sessions.get(sid);
    if (!s?.relay.child.alive) {
      await ctx.onHead(404, undefined);
      const spec = renderDenial({ kind: "session_unknown" });
      ctx.res.writeHead(spec.status, spec.headers).end(spec.body);
      return undefined;
    }
    if (s.principal !== ctx.admission.identity.principal) {
      // Defence in depth (the gate's own binding check runs first when a state store is set):
      // another principal's session is answered as unknown, and onHead is not told, so the gate
      // does not forget the owner's binding.
      const spec = renderDenial({ kind: "session_unknown" });
      ctx.res.writeHead(spec.status, spec.headers).end(spec.body);
      return undefined;
    }
    return s;
  }

  async function post(ctx: ForwardContext, started: number): Promise<ForwardOutcome> {
    const { req, res, admission } = ctx;
    const s = await lookup(ctx);
    if (!s) return { status: res.statusCode, upstreamMs: performance.now() - started, result: "ok" };
    const messages = admission.messages.map((m) => m.raw);
    const hasRequests = admission.messages.some((m) => m.type === "request");
    if (!hasRequests) {
      const ok = s.relay.post(messages);
      const status = admission.localResponses.length > 0 ? 200 : ok ? 202 : 404;
      await ctx.onHead(status, s.id);
      if (status === 200) {
        res
          .writeHead(200, { "content-type": "application/json", "mcp-session-id": s.id })
          .end(JSON.stringify(admission.localResponses));
      } else if (status === 202) res.writeHead(202, { "mcp-session-id": s.id }).end();
      else {
        const spec = renderDenial({ kind: "session_unknown" });
        res.writeHead(spec.status, spec.headers).end(spec.body);
      }
      return { status, upstreamMs: performance.now() - started, result: "ok" };
    }
    await ctx.onHead(200, s.id);
    const headers = { "mcp-session-id": s.id };
    const channel = openChannel(req, res, headers);
    const ex = s.relay.begin(
      channel,
      messages,
      {
        era: admission.era,
        localResponses: admission.localResponses,
        ...(admission.listFilter ? { visible: admission.listFilter } : {}),
      },
      admission.batch || ctx.body === undefined ? undefined : ctx.body,
    );
    const onClose = () => s.relay.abandon(ex);
    res.once("close", onClose);
    await ex.done;
    res.off("close", onClose);
    return {
      status: 200,
      upstreamMs: performance.now() - started,
      result: res.writableFinished ? "ok" : "aborted",
    };
  }

  async function get(ctx: ForwardContext, started: number): Promise<ForwardOutcome> {
    const { req, res } = ctx;
    if (!accepts(req, "text/event-stream")) {
      await ctx.onHead(406, undefined);
      rpcRefusal(res, 406, -32000, "Not Acceptable: Client must accept text/event-stream");
      return { status: 406, upstreamMs: 0, result: "error" };
    }
    if (closing) {
      // Shutting down: a reconnecting GET stream would hold the grace period open.
      await ctx.onHead(503, undefined);
      const spec = renderDenial({ kind: "capacity", message: "shutting down" });
      res.writeHead(spec.status, spec.headers).end(spec.body);
      return { status: 503, upstreamMs: 0, result: "error" };
    }
    const s = await lookup(ctx);
    if (!s) return { status: res.statusCode, upstreamMs: 0, result: "ok" };
    if (s.relay.hasStandalone) {
      await ctx.onHead(409, s.id);
      rpcRefusal(res, 409, -32000, "Conflict: Only one SSE stream is allowed per session");
      return { status: 409, upstreamMs: 0, result: "error" };
    }
    await ctx.onHead(200, s.id);
    const channel: Channel = createSseChannel(res, { "mcp-session-id": s.id });
    s.relay.attachStandalone(channel);
    await new Promise<void>((resolve) => {
      if (res.destroyed || res.writableEnded) resolve();
      res.once("close", resolve);
    });
    s.relay.detachStandalone(channel);
    return { status: 200, upstreamMs: performance.now() - started, result: "ok" };
  }

  async function del(ctx: ForwardContext, started: number): Promise<ForwardOutcome> {
    const s = await lookup(ctx);
    if (!s) return { status: ctx.res.statusCode, upstreamMs: 0, result: "ok" };
    // Answer once the process is gone, so a client that sees 200 can rely on it.
    await endSession(s, "deleted");
    await ctx.onHead(200, s.id);
    ctx.res.writeHead(200).end();
    return { status: 200, upstreamMs: performance.now() - started, result: "ok" };
  }

  async function forward(ctx: ForwardContext): Promise<ForwardOutcome> {
    const started = performance.now();
    const method = (ctx.req.method ?? "GET").toUpperCase();
    if (ctx.admission.era === "2026") {
      if (method !== "POST") {
        // SH-0728: a stateless server answers GET and DELETE with 405.
        await ctx.onHead(405, undefined);
        ctx.res.setHeader("allow", "POST");
        rpcRefusal(ctx.res, 405, -32000, "Method Not Allowed");
        return { status: 405, upstreamMs: 0, result: "error" };
      }
      return pool.forward(ctx, started);
    }
    if (method === "POST") {
      return ctx.admission.initialize ? startSession(ctx, started) : post(ctx, started);
    }
    if (method === "GET") return get(ctx, started);
    return del(ctx, started);
  }

  return {
    forward,
    childPids() {
      const pids = [...sessions.values()].map((s) => s.relay.child.pid);
      return [...pids, ...children.sparePids(), ...pool.pids()].filter((p): p is number => p !== undefined);
    },
    sessionPid(sessionId) {
      return sessions.get(sessionId)?.relay.child.pid;
    },
    sessionCount: () => sessions.size,
    sparePids: () => children.sparePids(),
    drain() {
      closing = true;
      for (const s of sessions.values()) s.relay.closeStandalone();
    },
    async close() {
      closing = true;
      clearInterval(sweeper);
      // The supervisor first: its closing flag turns the children's exit logs down to debug.
      const sparesGone = children.close(killGraceMs);
      await Promise.all([
        sparesGone,
        ...[...sessions.values()].map((s) => endSession(s, "shutdown")),
        pool.close(),
      ]);
    },
  };
}
