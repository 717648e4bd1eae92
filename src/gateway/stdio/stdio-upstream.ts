import { randomUUID } from "node:crypto";
import { redactSessionId } from "../../gate/gate.js";
import type { ForwardResult } from "../../http/front-door.js";
import { accepts } from "../../http/response-owner.js";
import { withMeta } from "../../mcp/wire-ids.js";
import type { Logger } from "../../observe/logger.js";
import type { ForwardContext, Upstream } from "../upstream.js";
import { buildChildEnv } from "./child-process.js";
import { type ChildSupervisor, createChildSupervisor } from "./children.js";
import { createStdioPool, initializeChild, ownerOf, type StdioPool } from "./pool.js";
import { type ChildRelay, whenAborted } from "./relay.js";

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
  /**
   * Most children one principal may hold, sessions and pool together (`upstream.maxChildrenPerPrincipal`;
   * default {@link defaultChildrenPerPrincipal}); beyond: 429 with Retry-After, so one caller
   * cannot take every slot (issue 14 item 3).
   */
  maxChildrenPerPrincipal?: number;
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

/**
 * Default `upstream.maxChildrenPerPrincipal`: a tenth of `maxChildren`, at least 1.
 *
 * @example defaultChildrenPerPrincipal(100) // 10
 */
export function defaultChildrenPerPrincipal(maxChildren: number): number {
  return Math.max(1, Math.ceil(maxChildren / 10));
}

interface Session {
  id: string;
  principal: string;
  /**
   * The identity its child was told at spawn (`ownerOf`): with an identity mode, the principal and
   * its scopes, client, tenant, kind; without one, the principal alone.
   */
  key: string;
  /** Whether the child was spawned with an identity environment (`ctx.spawnEnv`). */
  told: boolean;
  relay: ChildRelay;
  tag: string;
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
  const perPrincipal = options.maxChildrenPerPrincipal ?? defaultChildrenPerPrincipal(maxChildren);
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
  /** The same, per principal (its share counts children still starting). */
  const startingBy = new Map<string, number>();
  /** Children `principal` holds now: its sessions, those starting, its pooled children. */
  function childrenOf(principal: string): number {
    let n = (startingBy.get(principal) ?? 0) + pool.countFor(principal);
    for (const s of sessions.values()) if (s.principal === principal) n++;
    return n;
  }
  /** Seconds until the least recently active session of `principal` idles out (Retry-After). */
  function nextFreeSec(principal: string): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const s of sessions.values())
      if (s.principal === principal) oldest = Math.min(oldest, s.relay.lastActive);
    const ms = Number.isFinite(oldest) ? oldest + idleTtlMs - Date.now() : 1000;
    return Math.max(1, Math.ceil(ms / 1000));
  }
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
    principalHasRoom: (principal) => childrenOf(principal) < perPrincipal,
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

  async function startSession(ctx: ForwardContext, started: number): Promise<ForwardResult> {
    const { admission, plan, owner } = ctx;
    const elapsed = () => performance.now() - started;
    const init = plan.forward.find((m) => m.method === "initialize");
    if (plan.forward.length !== 1 || !init) {
      owner.refuse({ kind: "invalid_request", message: "Only one initialization request is allowed" });
      return { result: "refused", upstreamMs: elapsed() };
    }
    const principal = admission.identity.principal;
    // The caller's share of children is taken (its own sessions): it waits, nobody else does.
    // Checked before the child's identity is signed (a refused initialize costs no signature), and
    // again after (others may have started meanwhile).
    const atShare = () => {
      if (closing || childrenOf(principal) < perPrincipal) return false;
      owner.refuse({ kind: "session_limit", scope: "principal", retryAfterSec: nextFreeSec(principal) });
      return true;
    };
    if (atShare()) return { result: "refused", upstreamMs: elapsed() };
    // The child's identity (its own assertion), made before any room is taken for it.
    let env: Record<string, string> | undefined;
    if (ctx.spawnEnv) {
      try {
        env = await ctx.spawnEnv();
      } catch {
        owner.refuse({ kind: "identity_unavailable" });
        return { result: "identity_unavailable", upstreamMs: elapsed() };
      }
    }
    if (atShare()) return { result: "refused", upstreamMs: elapsed() };
    if (closing || !children.makeRoom()) {
      owner.refuse({ kind: "capacity", message: "no stdio upstream slot free" });
      return { result: "refused", upstreamMs: elapsed() };
    }
    const id = randomUUID();
    const tag = redactSessionId(id);
    let relay: ChildRelay;
    try {
      relay = children.acquire(
        tag,
        () => {
          if (sessions.get(id)?.relay === relay) sessions.delete(id);
        },
        env,
      );
    } catch (err) {
      logger.error({ upstream: tag, err: (err as Error).message }, "stdio upstream could not start");
      owner.refuse({ kind: "upstream_unavailable" });
      return { result: "unavailable", upstreamMs: elapsed() };
    }
    const onClientGone = () => {
      if (!sessions.has(id)) void relay.child.terminate(0);
    };
    owner.signal.addEventListener("abort", onClientGone, { once: true });
    starting++;
    startingBy.set(principal, (startingBy.get(principal) ?? 0) + 1);
    children.refill();
    let answer: Awaited<ReturnType<typeof initializeChild>>;
    try {
      answer = await initializeChild(relay, withMeta(init.raw, ctx.meta), initTimeoutMs);
    } finally {
      starting--;
      const left = (startingBy.get(principal) ?? 1) - 1;
      if (left > 0) startingBy.set(principal, left);
      else startingBy.delete(principal);
      owner.signal.removeEventListener("abort", onClientGone);
    }
    const upstreamMs = elapsed();
    if (!answer.ok || owner.signal.aborted) {
      void relay.child.terminate(killGraceMs);
      if (owner.signal.aborted) {
        owner.refuse({ kind: "credential_expired" });
        return { result: "aborted", upstreamMs };
      }
      const timeout = !answer.ok && answer.timeout;
      owner.refuse(timeout ? { kind: "upstream_timeout" } : { kind: "upstream_unavailable" });
      return { result: timeout ? "timeout" : "unavailable", upstreamMs };
    }
    // A child that refuses initialize gets no session: relay its error and end it.
    const minted = answer.accepted && relay.child.alive;
    const told = ctx.spawnEnv !== undefined;
    const { key } = ownerOf(admission.identity, told);
    if (minted) sessions.set(id, { id, principal, key, told, relay, tag });
    else void relay.child.terminate(killGraceMs);
    if (!(await owner.bind(200, minted ? id : undefined))) {
      // The gate could not bind the new session (state store down): end it; 503 was answered.
      sessions.delete(id);
      void relay.child.terminate(killGraceMs);
      return { result: "refused", upstreamMs };
    }
    const channel = owner.channel(minted ? { "mcp-session-id": id } : {});
    for (const r of plan.localResponses) channel.send(JSON.stringify(r));
    channel.send(answer.text);
    channel.close();
    if (minted) logger.debug({ upstream: tag, pid: relay.child.pid }, "stdio session started");
    return { result: "ok", upstreamMs };
  }

  /** Find the caller's session; the owner answers 400/404 when there is none. */
  async function lookup(ctx: ForwardContext): Promise<Session | undefined> {
    const { admission, owner } = ctx;
    const sid = admission.sessionId;
    if (sid === undefined) {
      owner.refuse({ kind: "session_missing" });
      return undefined;
    }
    const s = sessions.get(sid);
    if (!s?.relay.child.alive) {
      await owner.bind(404, undefined);
      owner.refuse({ kind: "session_unknown" });
      return undefined;
    }
    // The same principal may always end its own session (DELETE tells the child nothing): a caller
    // whose scopes changed must not be left with a child counted against its share until it idles.
    const ending = admission.method === "DELETE" && s.principal === admission.identity.principal;
    if (!ending && ownerOf(admission.identity, s.told).key !== s.key) {
      // Answered as the gate answers a session used by another principal (gate.ts, session check:
      // 404, -31003), and the gate is not told (no bind(404)), so it does not forget the owner's
      // binding. Another principal: defence in depth, the gate's binding check runs first. The same
      // principal with other scopes, client or tenant (a narrower token): the gate admits it, but
      // the child was told the identity that opened the session and would act on its scopes.
      if (s.principal === admission.identity.principal) owner.event("session_mismatch");
      owner.refuse({ kind: "session_unknown" });
      return undefined;
    }
    return s;
  }

  async function post(ctx: ForwardContext, started: number): Promise<ForwardResult> {
    const { admission, plan, owner } = ctx;
    const s = await lookup(ctx);
    if (!s) return { result: "refused", upstreamMs: performance.now() - started };
    const messages = plan.forward.map((m) => m.raw);
    const headers = { "mcp-session-id": s.id };
    // The child is not reading what it was sent (it blocks on output its client does not read):
    // nothing more is queued for it, whatever the caller sends.
    const backlogged = () => {
      owner.refuse({
        kind: "capacity",
        message: "the stdio upstream is not reading its input; try again later",
      });
      return { result: "refused", upstreamMs: performance.now() - started };
    };
    if (s.relay.inputBacklogged) return backlogged();
    if (!plan.expectsAnswers) {
      // The bound was checked just above, with nothing in between: false means the child is gone.
      if (!s.relay.post(messages)) {
        await owner.bind(404, undefined);
        owner.refuse({ kind: "session_unknown" });
        return { result: "refused", upstreamMs: performance.now() - started };
      }
      await owner.bind(202, s.id);
      if (plan.localResponses.length > 0) owner.answerLocally(headers);
      else owner.empty(202, headers);
      return { result: "ok", upstreamMs: performance.now() - started };
    }
    await owner.bind(200, s.id);
    const channel = owner.channel(headers);
    const ex = s.relay.begin(channel, messages, {
      era: admission.era,
      rewriteIds: true,
      meta: ctx.meta,
      localResponses: plan.localResponses,
      ...(plan.visible ? { visible: plan.visible } : {}),
    });
    const stop = whenAborted(owner.signal, () => s.relay.abandon(ex));
    await ex.done;
    stop();
    return { result: owner.signal.aborted ? "aborted" : "ok", upstreamMs: performance.now() - started };
  }

  async function get(ctx: ForwardContext, started: number): Promise<ForwardResult> {
    const { req, owner } = ctx;
    if (!accepts(req, "text/event-stream")) {
      owner.refuse({ kind: "not_acceptable", accept: "text/event-stream" });
      return { result: "refused" };
    }
    if (closing) {
      // Shutting down: a reconnecting GET stream would hold the grace period open.
      owner.refuse({ kind: "capacity", message: "shutting down" });
      return { result: "refused" };
    }
    const s = await lookup(ctx);
    if (!s) return { result: "refused" };
    if (s.relay.hasStandalone) {
      owner.refuse({ kind: "stream_conflict" });
      return { result: "refused" };
    }
    await owner.bind(200, s.id);
    const channel = owner.stream({ "mcp-session-id": s.id });
    s.relay.attachStandalone(channel);
    // The stream lasts until the client leaves, shutdown, or the credential's lifetime ends.
    await new Promise<void>((resolve) => {
      if (owner.signal.aborted || !channel.open) return resolve();
      owner.signal.addEventListener("abort", () => resolve(), { once: true });
      ctx.res.once("close", resolve);
    });
    s.relay.detachStandalone(channel);
    return { result: "ok", upstreamMs: performance.now() - started };
  }

  async function del(ctx: ForwardContext, started: number): Promise<ForwardResult> {
    const s = await lookup(ctx);
    if (!s) return { result: "refused" };
    // Answer once the process is gone, so a client that sees 200 can rely on it.
    await endSession(s, "deleted");
    await ctx.owner.bind(200, s.id);
    ctx.owner.empty(200);
    return { result: "ok", upstreamMs: performance.now() - started };
  }

  async function forward(ctx: ForwardContext): Promise<ForwardResult> {
    const started = performance.now();
    const method = ctx.admission.method;
    if (ctx.admission.era === "2026") {
      if (method !== "POST") {
        // SH-0728: a stateless server answers GET and DELETE with 405.
        ctx.owner.refuse({ kind: "method_not_allowed", allow: ["POST"] });
        return { result: "refused" };
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
