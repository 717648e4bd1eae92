import { renderRpcError } from "../../core/challenge.js";
import type { JsonRpcId } from "../../core/outcome.js";
import type { Channel } from "../../http/response-owner.js";
import type { Era } from "../../mcp/era.js";
import { filterListResponse, isListMethod, type VisibilityPredicate } from "../../mcp/list-filter.js";
import { withMeta } from "../../mcp/wire-ids.js";
import type { StdioChild } from "./child-process.js";

/** What the relay needs to know about the requests of one HTTP POST. */
export interface ExchangePlan {
  era: Era;
  visible?: VisibilityPredicate;
  /** Answers the gate produced itself (denied batch elements), sent first. */
  localResponses?: ReadonlyArray<Record<string, unknown>>;
  /**
   * Give requests ids unique to this child (and progress tokens) and restore them on the way back:
   * an answer can then only reach the request it answers (issue 13). On for sessions and the pool.
   */
  rewriteIds?: boolean;
  /** Extra `params._meta` entries for every request (e.g. a W3C traceparent). */
  meta?: Readonly<Record<string, string>>;
}

export type { Channel };

export interface Exchange {
  readonly channel: Channel;
  /** Resolves when every request was answered, the child failed, or the client left. */
  readonly done: Promise<void>;
}

interface ExchangeState extends Exchange {
  waiting: Set<string>;
  lists: Map<string, string>;
  plan: ExchangePlan;
  /** Gateway id key → the client's id (pool mode). */
  clientIds: Map<string, JsonRpcId>;
  tokens: string[];
  finish(): void;
}

const idKey = (id: unknown): string => (typeof id === "string" ? `s${id}` : `n${String(id)}`);
const MAX_BACKLOG = 256;
/** Bytes of unsolicited messages kept for a GET stream that is not open yet. */
const MAX_BACKLOG_BYTES = 1024 * 1024;

/**
 * Routes the messages of one child process to the HTTP responses waiting for them: a response to
 * the stream of its request, `notifications/progress` to the stream whose request carried the
 * token, anything else the child says on its own (logging, server→client requests) to the oldest
 * open request stream, else the standalone GET stream, else a small backlog delivered when one
 * opens. Messages are relayed verbatim unless a list must be filtered or (pool) an id restored.
 */
export class ChildRelay {
  readonly #child: StdioChild;
  readonly #pending = new Map<string, ExchangeState>();
  readonly #progress = new Map<string, { ex: ExchangeState; token: unknown }>();
  readonly #exchanges = new Set<ExchangeState>();
  #standalone: Channel | undefined;
  #backlog: string[] = [];
  #backlogBytes = 0;
  /** Channels whose client is not keeping up: while any is, the child's stdout is not read. */
  #blocked = 0;
  #seq = 0;
  /** Rewritten ids: the client's id (idKey) → the id the child saw for its latest open request. */
  readonly #childIdOf = new Map<string, string>();
  #lastActive = Date.now();
  /** Pool mode: answer server→client requests here (there is no session to carry them). */
  onServerRequest: ((message: Record<string, unknown>) => void) | undefined;

  constructor(child: StdioChild) {
    this.#child = child;
  }

  get child(): StdioChild {
    return this.#child;
  }

  /** Requests in flight (a child with none and no recent use may be ended for idleness). */
  get busy(): number {
    return this.#exchanges.size;
  }

  get lastActive(): number {
    return this.#lastActive;
  }

  /** The child leaves its input unread (see StdioChild.inputBacklogged): nothing more is sent to it. */
  get inputBacklogged(): boolean {
    return this.#child.inputBacklogged;
  }

  get hasStandalone(): boolean {
    return this.#standalone?.open === true;
  }

  /** Send client messages that need no answer (notifications, responses to the child's requests). */
  post(messages: ReadonlyArray<Record<string, unknown>>): boolean {
    this.#lastActive = Date.now();
    const out = messages.map((m) => this.#cancellation(m)).filter((m) => m !== undefined);
    // All or none: a batch cut part-way would be sent again whole by a client told to retry.
    return out.length === 0 || this.#child.sendAll(out);
  }

  /**
   * A client's `notifications/cancelled` names the client's request id; where ids are rewritten the
   * child only ever saw its own, so the cancellation names that one (undefined: a request the child
   * never got, nothing to say). Any other message is returned as it is.
   */
  #cancellation(m: Record<string, unknown>): Record<string, unknown> | undefined {
    if (m.method !== "notifications/cancelled" || this.#childIdOf.size === 0) return m;
    const params = m.params as Record<string, unknown> | undefined;
    const childId = this.#childIdOf.get(idKey(params?.requestId));
    if (childId === undefined) return undefined;
    return { ...m, params: { ...params, requestId: childId } };
  }

  /**
   * Start an exchange: register the requests among `messages`, then write every message to the
   * child. `verbatim` is the client's body when it may be written to the child unchanged.
   */
  begin(
    channel: Channel,
    messages: ReadonlyArray<Record<string, unknown>>,
    plan: ExchangePlan,
    verbatim?: string,
  ): Exchange {
    this.#lastActive = Date.now();
    let resolve!: () => void;
    const done = new Promise<void>((r) => {
      resolve = r;
    });
    const ex: ExchangeState = {
      channel,
      done,
      waiting: new Set(),
      lists: new Map(),
      plan,
      clientIds: new Map(),
      tokens: [],
      finish: () => {
        if (!this.#exchanges.delete(ex)) return;
        for (const k of ex.waiting) if (this.#pending.get(k) === ex) this.#pending.delete(k);
        for (const [wire, clientId] of ex.clientIds) {
          const ck = idKey(clientId);
          if (this.#childIdOf.get(ck) !== undefined && idKey(this.#childIdOf.get(ck)) === wire)
            this.#childIdOf.delete(ck);
        }
        for (const t of ex.tokens) this.#progress.delete(t);
        this.#lastActive = Date.now();
        channel.close();
        resolve();
      },
    };
    this.#exchanges.add(ex);
    for (const r of plan.localResponses ?? []) this.#deliver(channel, JSON.stringify(r));
    const out: Array<Record<string, unknown>> = [];
    for (const m of messages) {
      const isRequest = typeof m.method === "string" && Object.hasOwn(m, "id");
      if (!isRequest) {
        const mapped = this.#cancellation(m);
        if (mapped) out.push(mapped);
        continue;
      }
      let msg = m;
      let key = idKey(m.id);
      if (plan.rewriteIds) {
        const gid = `mcpgate-${++this.#seq}`;
        key = idKey(gid);
        ex.clientIds.set(key, m.id as JsonRpcId);
        this.#childIdOf.set(idKey(m.id), gid);
        msg = { ...m, id: gid };
      }
      msg = withMeta(msg, plan.meta);
      const params = msg.params as Record<string, unknown> | undefined;
      const meta = params?._meta as Record<string, unknown> | undefined;
      if (meta && Object.hasOwn(meta, "progressToken")) {
        let token = meta.progressToken;
        if (plan.rewriteIds) {
          token = `mcpgate-p${this.#seq}`;
          msg = { ...msg, params: { ...params, _meta: { ...meta, progressToken: token } } };
        }
        const tk = idKey(token);
        this.#progress.set(tk, { ex, token: meta.progressToken });
        ex.tokens.push(tk);
      }
      ex.waiting.add(key);
      this.#pending.set(key, ex);
      if (plan.visible && isListMethod(m.method as string)) ex.lists.set(key, m.method as string);
      out.push(msg);
    }
    if (ex.waiting.size === 0) ex.finish();
    const sent =
      verbatim !== undefined && !plan.rewriteIds && !plan.meta && out.length === 1 && !/[\r\n]/.test(verbatim)
        ? this.#child.send(verbatim)
        : this.#child.sendAll(out);
    if (!sent) this.#failExchange(ex);
    return ex;
  }

  /** The client went away: forget its exchange (pool mode also cancels the child's work). */
  abandon(exchange: Exchange): void {
    const ex = exchange as ExchangeState;
    if (!this.#exchanges.has(ex)) return;
    if (ex.plan.rewriteIds) {
      for (const k of ex.waiting) {
        // The child's ids are "mcpgate-N" strings; spec: cancelled carries the request id.
        this.#child.send({
          jsonrpc: "2.0",
          method: "notifications/cancelled",
          params: { requestId: k.slice(1), reason: "client disconnected" },
        });
      }
    }
    ex.finish();
  }

  /** Attach the standalone GET stream; the backlog is flushed into it. */
  attachStandalone(channel: Channel): void {
    this.#standalone = channel;
    for (const text of this.#backlog) this.#deliver(channel, text);
    this.#backlog = [];
    this.#backlogBytes = 0;
  }

  /** End the standalone GET stream, if any (shutdown). */
  closeStandalone(): void {
    this.#standalone?.close();
    this.#standalone = undefined;
  }

  detachStandalone(channel: Channel): void {
    if (this.#standalone === channel) this.#standalone = undefined;
  }

  /** The child is gone: every waiting request gets a JSON-RPC error, every stream ends. */
  failAll(): void {
    for (const ex of [...this.#exchanges]) this.#failExchange(ex);
    this.#standalone?.close();
    this.#standalone = undefined;
    this.#backlog = [];
    this.#backlogBytes = 0;
  }

  #failExchange(ex: ExchangeState) {
    for (const k of ex.waiting) {
      const id = ex.clientIds.get(k) ?? parseKey(k);
      ex.channel.send(renderRpcError(id, { kind: "upstream_unavailable" }));
    }
    ex.finish();
  }

  /**
   * Send to a client's channel. When its client is not keeping up, the child's stdout stops being
   * read until it is: the child then blocks on its own writes, and nothing piles up here.
   */
  #deliver(channel: Channel, text: string): void {
    if (channel.send(text)) return;
    if (this.#blocked++ === 0) this.#child.pauseOutput();
    void channel.drained().then(() => {
      if (--this.#blocked === 0) this.#child.resumeOutput();
    });
  }

  /** Feed one message the child wrote on stdout. */
  receive(value: unknown, text: string): void {
    if (Array.isArray(value)) {
      for (const v of value) this.receive(v, JSON.stringify(v));
      return;
    }
    if (!value || typeof value !== "object") return;
    const msg = value as Record<string, unknown>;
    if (typeof msg.method === "string") {
      if (msg.method === "notifications/progress") {
        const params = msg.params as Record<string, unknown> | undefined;
        const route = this.#progress.get(idKey(params?.progressToken));
        if (route) {
          const out = route.ex.plan.rewriteIds
            ? JSON.stringify({ ...msg, params: { ...params, progressToken: route.token } })
            : text;
          this.#deliver(route.ex.channel, out);
          return;
        }
      }
      if (Object.hasOwn(msg, "id") && this.onServerRequest) {
        this.onServerRequest(msg);
        return;
      }
      this.#sendUnrelated(text);
      return;
    }
    if (!Object.hasOwn(msg, "id")) return;
    const key = idKey(msg.id);
    const ex = this.#pending.get(key);
    if (!ex) return; // late answer to a request whose client left
    this.#pending.delete(key);
    ex.waiting.delete(key);
    let out = msg;
    const clientId = ex.clientIds.get(key);
    if (clientId !== undefined || ex.clientIds.has(key)) out = { ...out, id: clientId };
    const list = ex.lists.get(key);
    if (list && ex.plan.visible) out = filterListResponse(out, list, ex.plan.visible, ex.plan.era);
    this.#deliver(ex.channel, out === msg ? text : JSON.stringify(out));
    if (ex.waiting.size === 0) ex.finish();
  }

  #sendUnrelated(text: string) {
    for (const ex of this.#exchanges) {
      if (ex.channel.sse && ex.channel.open) {
        this.#deliver(ex.channel, text);
        return;
      }
    }
    if (this.#standalone?.open) {
      this.#deliver(this.#standalone, text);
      return;
    }
    // Bounded in count and bytes: the oldest unsolicited messages give way.
    this.#backlog.push(text);
    this.#backlogBytes += text.length;
    while (this.#backlog.length > MAX_BACKLOG || this.#backlogBytes > MAX_BACKLOG_BYTES) {
      this.#backlogBytes -= this.#backlog.shift()!.length;
    }
  }
}

function parseKey(k: string): JsonRpcId {
  if (k.startsWith("s")) return k.slice(1);
  const n = Number(k.slice(1));
  return k === "nnull" || !Number.isFinite(n) ? null : n;
}

/**
 * Run `fn` once when `signal` aborts — at once if it already has. Returns the un-registration.
 *
 * @example const stop = whenAborted(owner.signal, () => relay.abandon(ex)); await ex.done; stop();
 */
export function whenAborted(signal: AbortSignal, fn: () => void): () => void {
  if (signal.aborted) {
    fn();
    return () => {};
  }
  signal.addEventListener("abort", fn, { once: true });
  return () => signal.removeEventListener("abort", fn);
}
