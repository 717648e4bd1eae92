import { JSONRPC } from "../../core/challenge.js";
import type { Identity } from "../../core/identity.js";
import type { ForwardResult } from "../../http/front-door.js";
import type { ForwardContext } from "../upstream.js";
import { type Channel, type ChildRelay, whenAborted } from "./relay.js";

export type InitResult = { ok: true; text: string; accepted: boolean } | { ok: false; timeout: boolean };

/**
 * Send `initialize` to a fresh child and wait for its answer (bounded). `accepted` is false when
 * the child answered with a JSON-RPC error. Messages the child sends meanwhile stay in its
 * relay's backlog (delivered on the session's GET stream).
 */
export async function initializeChild(
  relay: ChildRelay,
  message: Record<string, unknown>,
  timeoutMs: number,
  rewriteIds = false,
): Promise<InitResult> {
  const texts: string[] = [];
  const capture: Channel = {
    sse: false,
    open: true,
    send: (t) => texts.push(t) > 0,
    drained: () => Promise.resolve(),
    close: () => {},
  };
  const ex = relay.begin(capture, [message], { era: "2025", rewriteIds });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    ex.done.then(() => false),
    new Promise<boolean>((r) => {
      timer = setTimeout(() => r(true), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    relay.abandon(ex);
    return { ok: false, timeout: true };
  }
  const text = texts[texts.length - 1];
  if (text === undefined || !relay.child.alive) return { ok: false, timeout: false };
  let accepted = false;
  try {
    accepted = Object.hasOwn(JSON.parse(text) as object, "result");
  } catch {
    return { ok: false, timeout: false };
  }
  return { ok: true, text, accepted };
}

export interface StdioPoolOptions {
  size: number;
  initTimeoutMs: number;
  killGraceMs: number;
  /** Whether another child may be started now (the upstream's global maximum). */
  canSpawn(): boolean;
  /** Whether `principal` may have one more child (its share, `upstream.maxChildrenPerPrincipal`). */
  principalHasRoom(principal: string): boolean;
  startChild(tag: string, onGone: () => void, env?: Readonly<Record<string, string>>): ChildRelay;
}

export interface StdioPool {
  forward(ctx: ForwardContext, started: number): Promise<ForwardResult>;
  size(): number;
  /** Pooled children owned by `principal`. */
  countFor(principal: string): number;
  pids(): number[];
  sweep(nowMs: number, idleTtlMs: number): void;
  close(): Promise<void>;
}

interface Member {
  relay: ChildRelay;
  /** The only principal this child ever serves (issue 14 item 4: a child keeps state between calls). */
  principal: string;
  /**
   * What it serves exactly: the principal, and with an identity hook the identity it was started
   * with (scopes, client, tenant are in its environment): a request with other scopes gets another child.
   */
  key: string;
  busy: boolean;
  ready: boolean;
}

const QUEUE_PER_CHILD = 32;

/** Who a child serves: a principal, and the identity it was told at start, if any. */
export interface ChildOwner {
  principal: string;
  key: string;
}

/**
 * Who a child serves. A child told its caller's identity at start (`MCPGATE_SCOPES`, the assertion's
 * `client_id`, `tenant`, `kind`) serves only requests of that identity: the same principal with other
 * scopes (a narrower token) never reaches a child that believes it holds the wider scopes — in the
 * pool it gets a child of its own, on a session it is refused. A child told nothing serves its
 * principal (`key` is the principal).
 *
 * @example ownerOf(identity, ctx.spawnEnv !== undefined).key // '["key:alice",["read"],null,null,"api_key"]'
 */
export function ownerOf(identity: Identity, told: boolean): ChildOwner {
  const { principal } = identity;
  if (!told) return { principal, key: principal };
  const key = JSON.stringify([
    principal,
    [...identity.scopes].sort(),
    identity.clientId ?? null,
    identity.tenant ?? null,
    identity.kind,
  ]);
  return { principal, key };
}

/**
 * 2026-07-28 requests are stateless (no session to own a process): they are served by a small
 * pool of children, each owned by one principal for its whole life (a server keeps state in its
 * process: a child shared between callers would let one read what another stored). No
 * `initialize` is sent on the gateway's behalf: a dual-era server (the v2 SDK's `serveStdio`)
 * learns its era from its first message, which is the caller's 2026 request, and a 2025-only
 * server answers requests without one. When the pool is full, an idle child of another principal
 * is ended to make room. A child serves one request at a time,
 * with gateway-unique ids (restored on the way back), so a late answer can never reach another
 * caller. Server→client requests have no channel back in this mode and are refused to the child.
 *
 * @example const pool = createStdioPool({ size: 4, initTimeoutMs: 30_000, killGraceMs: 2_000, canSpawn, startChild });
 */
export function createStdioPool(options: StdioPoolOptions): StdioPool {
  const members = new Set<Member>();
  /**
   * Children being started, by principal: counted with the members from the check until the
   * spawn, so concurrent first requests of one caller (whose identity is signed in between) cannot
   * all pass the share check, nor evict other callers' children for it.
   */
  const reserved = new Map<string, number>();
  let reservedTotal = 0;
  const bump = (map: Map<string, number>, k: string, by: number) => {
    const n = (map.get(k) ?? 0) + by;
    if (n > 0) map.set(k, n);
    else map.delete(k);
  };
  const reserve = (who: ChildOwner, by: 1 | -1) => {
    bump(reserved, who.key, by);
    if (who.key !== who.principal) bump(reserved, who.principal, by);
    reservedTotal += by;
  };
  const occupied = () => members.size + reservedTotal;
  const waiters: Array<{ key: string; give: (m: Member | undefined) => void }> = [];
  let seq = 0;
  let closed = false;
  const shareOfPool = Math.max(1, Math.ceil(options.size / 2));

  function spawnMember(who: ChildOwner, env?: Record<string, string>): Member | undefined {
    const member: Member = { relay: undefined as unknown as ChildRelay, ...who, busy: true, ready: false };
    try {
      member.relay = options.startChild(
        `pool-${++seq}`,
        () => {
          members.delete(member);
        },
        env,
      );
    } catch {
      return undefined;
    }
    members.add(member);
    member.relay.onServerRequest = (msg) => {
      member.relay.child.send({
        jsonrpc: "2.0",
        id: msg.id,
        error: {
          code: JSONRPC.METHOD_NOT_FOUND,
          message: "Method not found: no client channel for stateless requests",
        },
      });
    };
    member.ready = true;
    return member;
  }

  /** End one idle child `which` picks: room in a full pool, or for another identity of one principal. */
  function evictIdle(which: (m: Member) => boolean): void {
    for (const m of members) {
      if (m.ready && !m.busy && which(m)) {
        members.delete(m);
        void m.relay.child.terminate(options.killGraceMs);
        return;
      }
    }
  }

  async function acquire(
    who: ChildOwner,
    spawnEnv?: () => Promise<Record<string, string>>,
  ): Promise<Member | "full" | "failed" | "principal" | "queue"> {
    const { principal, key } = who;
    let owned = reserved.get(key) ?? 0;
    for (const m of members) {
      if (m.key !== key) continue;
      owned++;
      if (m.ready && !m.busy && m.relay.child.alive) {
        m.busy = true;
        return m;
      }
    }
    const own = owned > 0;
    // A principal's share of the pool: at most half of it (one child of a pool of one or two), so
    // one caller's slow requests queue on its own children and leave room for everyone else's.
    // The same principal's idle child told another identity makes room for this one.
    if (owned < shareOfPool && !options.principalHasRoom(principal))
      evictIdle((m) => m.principal === principal && m.key !== key);
    if (owned < shareOfPool && options.principalHasRoom(principal)) {
      if (occupied() >= options.size) evictIdle((m) => m.key !== key);
      if (occupied() < options.size && options.canSpawn()) {
        // The child's identity is made only now that one is started (it may throw: the caller
        // answers); the slot is held meanwhile.
        reserve(who, 1);
        let env: Record<string, string> | undefined;
        try {
          env = spawnEnv ? await spawnEnv() : undefined;
        } finally {
          reserve(who, -1);
        }
        if (occupied() < options.size && options.canSpawn()) return spawnMember(who, env) ?? "failed";
      }
    } else if (!own) {
      return "principal";
    }
    // Wait for one of the caller's own children (never another principal's) to come free.
    const queued = waiters.reduce((n, w) => n + (w.key === key ? 1 : 0), 0);
    if (!own || closed) return "full";
    // The caller's own requests fill its queue: its share, not the gateway's capacity (429).
    if (queued >= owned * QUEUE_PER_CHILD) return "queue";
    const m = await new Promise<Member | undefined>((resolve) => {
      const timer = setTimeout(() => {
        const i = waiters.indexOf(waiter);
        if (i !== -1) waiters.splice(i, 1);
        resolve(undefined);
      }, options.initTimeoutMs);
      const waiter = {
        key,
        give: (member: Member | undefined) => {
          clearTimeout(timer);
          resolve(member);
        },
      };
      waiters.push(waiter);
    });
    return m ?? "full";
  }

  /** The first waiter for children of `key` (or, when `key` is undefined, the first of any). */
  function takeWaiter(key?: string) {
    const i = waiters.findIndex((w) => key === undefined || w.key === key);
    return i === -1 ? undefined : waiters.splice(i, 1)[0];
  }

  function release(m: Member) {
    if (!m.relay.child.alive || !members.has(m)) {
      // Its replacement is spawned on demand; wake a waiter of that principal so it can try.
      takeWaiter(m.key)?.give(undefined);
      return;
    }
    const next = takeWaiter(m.key);
    if (next) next.give(m);
    else m.busy = false;
  }

  async function forward(ctx: ForwardContext, started: number): Promise<ForwardResult> {
    const { admission, plan, owner } = ctx;
    const messages = plan.forward.map((m) => m.raw);
    if (!plan.expectsAnswers) {
      // Stateless notifications have no process to reach that would remember them.
      await owner.bind(202, undefined);
      if (plan.localResponses.length > 0) owner.answerLocally();
      else owner.empty(202);
      return { result: "ok", upstreamMs: 0 };
    }
    let m: Awaited<ReturnType<typeof acquire>>;
    try {
      m = await acquire(ownerOf(admission.identity, ctx.spawnEnv !== undefined), ctx.spawnEnv);
    } catch {
      owner.refuse({ kind: "identity_unavailable" });
      return { result: "identity_unavailable", upstreamMs: performance.now() - started };
    }
    if (m === "full" || m === "failed" || m === "principal" || m === "queue") {
      const upstreamMs = performance.now() - started;
      if (m === "failed") {
        owner.refuse({ kind: "upstream_unavailable" });
        return { result: "unavailable", upstreamMs };
      }
      if (m === "principal") {
        // The caller holds its share of children (upstream.maxChildrenPerPrincipal).
        owner.refuse({ kind: "session_limit", scope: "principal", retryAfterSec: 1 });
        return { result: "refused", upstreamMs };
      }
      if (m === "queue") {
        owner.refuse({ kind: "in_flight_limit", what: "requests", retryAfterSec: 1 });
        return { result: "refused", upstreamMs };
      }
      owner.refuse({ kind: "capacity", message: "no stdio upstream slot free" });
      return { result: "refused", upstreamMs };
    }
    try {
      await owner.bind(200, undefined);
      const channel = owner.channel({});
      const ex = m.relay.begin(channel, messages, {
        era: admission.era,
        rewriteIds: true,
        meta: ctx.meta,
        localResponses: plan.localResponses,
        ...(plan.visible ? { visible: plan.visible } : {}),
      });
      // SH-0728: closing the response stream is the cancellation of that request.
      const stop = whenAborted(owner.signal, () => m.relay.abandon(ex));
      await ex.done;
      stop();
    } finally {
      release(m);
    }
    return { result: owner.signal.aborted ? "aborted" : "ok", upstreamMs: performance.now() - started };
  }

  return {
    forward,
    size: occupied,
    countFor: (principal) => {
      let n = reserved.get(principal) ?? 0;
      for (const m of members) if (m.principal === principal) n++;
      return n;
    },
    pids: () => [...members].map((m) => m.relay.child.pid).filter((p): p is number => p !== undefined),
    sweep(nowMs, idleTtlMs) {
      for (const m of members) {
        if (m.ready && !m.busy && nowMs - m.relay.lastActive > idleTtlMs) {
          members.delete(m);
          void m.relay.child.terminate(options.killGraceMs);
        }
      }
    },
    async close() {
      closed = true;
      for (const w of waiters.splice(0)) w.give(undefined);
      await Promise.all([...members].map((m) => m.relay.child.terminate(options.killGraceMs)));
      members.clear();
    },
  };
}
