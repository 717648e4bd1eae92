import type { ForwardResult } from "../../http/front-door.js";
import type { ForwardContext } from "../upstream.js";
import { type Channel, type ChildRelay, whenAborted } from "./relay.js";

/** The `initialize` the gateway sends to a pooled child on its own behalf. */
const POOL_INIT = {
  jsonrpc: "2.0",
  id: 0,
  method: "initialize",
  params: {
    protocolVersion: "2025-11-25",
    capabilities: {},
    clientInfo: { name: "mcpgate-pool", version: "0.1.0" },
  },
} as const;

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
  startChild(tag: string, onGone: () => void): ChildRelay;
}

export interface StdioPool {
  forward(ctx: ForwardContext, started: number): Promise<ForwardResult>;
  size(): number;
  pids(): number[];
  sweep(nowMs: number, idleTtlMs: number): void;
  close(): Promise<void>;
}

interface Member {
  relay: ChildRelay;
  busy: boolean;
  ready: boolean;
}

const QUEUE_PER_CHILD = 32;

/**
 * 2026-07-28 requests are stateless (no session to own a process): they are served by a small
 * pool of children that the gateway initialized itself. A child serves one request at a time,
 * with gateway-unique ids (restored on the way back), so a late answer can never reach another
 * caller. Server→client requests have no channel back in this mode and are refused to the child.
 *
 * @example const pool = createStdioPool({ size: 4, initTimeoutMs: 30_000, killGraceMs: 2_000, canSpawn, startChild });
 */
export function createStdioPool(options: StdioPoolOptions): StdioPool {
  const members = new Set<Member>();
  const waiters: Array<(m: Member | undefined) => void> = [];
  let seq = 0;
  let closed = false;

  async function spawnMember(): Promise<Member | undefined> {
    const member: Member = { relay: undefined as unknown as ChildRelay, busy: true, ready: false };
    try {
      member.relay = options.startChild(`pool-${++seq}`, () => {
        members.delete(member);
      });
    } catch {
      return undefined;
    }
    members.add(member);
    member.relay.onServerRequest = (msg) => {
      member.relay.child.send({
        jsonrpc: "2.0",
        id: msg.id,
        error: { code: -32601, message: "Method not found: no client channel for stateless requests" },
      });
    };
    const init = await initializeChild(member.relay, { ...POOL_INIT }, options.initTimeoutMs, true);
    if (!init.ok || !init.accepted) {
      members.delete(member);
      void member.relay.child.terminate(options.killGraceMs);
      return undefined;
    }
    member.relay.post([{ jsonrpc: "2.0", method: "notifications/initialized" }]);
    member.ready = true;
    return member;
  }

  async function acquire(): Promise<Member | "full" | "failed"> {
    for (const m of members) {
      if (m.ready && !m.busy && m.relay.child.alive) {
        m.busy = true;
        return m;
      }
    }
    if (members.size < options.size && options.canSpawn()) {
      return (await spawnMember()) ?? "failed";
    }
    if (waiters.length >= options.size * QUEUE_PER_CHILD || closed) return "full";
    const m = await new Promise<Member | undefined>((resolve) => {
      const timer = setTimeout(() => {
        const i = waiters.indexOf(give);
        if (i !== -1) waiters.splice(i, 1);
        resolve(undefined);
      }, options.initTimeoutMs);
      const give = (member: Member | undefined) => {
        clearTimeout(timer);
        resolve(member);
      };
      waiters.push(give);
    });
    return m ?? "full";
  }

  function release(m: Member) {
    if (!m.relay.child.alive || !members.has(m)) {
      // Its replacement is spawned on demand; wake a waiter so it can try.
      waiters.shift()?.(undefined);
      return;
    }
    const next = waiters.shift();
    if (next) next(m);
    else m.busy = false;
  }

  async function forward(ctx: ForwardContext, started: number): Promise<ForwardResult> {
    const { admission, plan, owner } = ctx;
    const messages = plan.forward.map((m) => m.raw);
    if (!plan.forward.some((m) => m.type === "request")) {
      // Stateless notifications have no process to reach that would remember them.
      await owner.bind(202, undefined);
      if (plan.localResponses.length > 0) owner.answerLocally();
      else owner.empty(202);
      return { result: "ok", upstreamMs: 0 };
    }
    const m = await acquire();
    if (m === "full" || m === "failed") {
      const upstreamMs = performance.now() - started;
      if (m === "failed") {
        owner.refuse({ kind: "upstream_unavailable" });
        return { result: "unavailable", upstreamMs };
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
    size: () => members.size,
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
      for (const w of waiters.splice(0)) w(undefined);
      await Promise.all([...members].map((m) => m.relay.child.terminate(options.killGraceMs)));
      members.clear();
    },
  };
}
