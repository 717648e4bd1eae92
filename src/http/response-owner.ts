import type { IncomingMessage, ServerResponse } from "node:http";
import { SessionLimitError } from "../core/errors.js";
import type { Denial } from "../core/outcome.js";
import type { Admission, Gate, ResponsePlan } from "../gate/gate.js";
import type { WireIds } from "../mcp/wire-ids.js";
import type { AnswerBudget } from "./answer-budget.js";
import { type Channel, type ChannelHost, JsonChannel, SSE_HEAD, SseChannel } from "./channels.js";
import { mergeLocalAnswers } from "./local-answers.js";
import {
  type RelayHost,
  type RelayOptions,
  type RelayResult,
  relayUpstream,
  type UpstreamAnswer,
} from "./upstream-relay.js";

export type { Channel } from "./channels.js";
export type { RelayOptions, RelayResult, UpstreamAnswer } from "./upstream-relay.js";

/**
 * The one owner of a response after admission (issue 13): the only code that writes the head and
 * the body of an MCP answer, whatever produced it — an HTTP upstream, a stdio child, or the gate
 * itself. It binds minted sessions on the head, maps upstream statuses (401/403 → 502, redirects
 * refused), keeps only safe upstream headers, filters every list answer, merges the gate's own
 * answers, honours backpressure (a client that does not read stops the upstream being read), and
 * renders every failure through core/challenge.ts.
 */

export interface ResponseOwnerOptions {
  req: IncomingMessage;
  res: ServerResponse;
  gate: Gate;
  admission: Admission;
  plan: ResponsePlan;
  /** Largest upstream JSON body buffered for rewriting (default 8 MiB). */
  maxResponseBytes?: number;
  /**
   * A client that does not read for this long while the gateway holds answers for it loses its
   * stream (default 60 s); until then the upstream is simply not read (backpressure).
   */
  slowClientMs?: number;
  /** Told about upstream credential refusals and bind failures (audit, logs). */
  onEvent?(event: OwnerEvent): void;
  /**
   * Memory for answers the client has not taken yet, per caller and in all (http/answer-budget.ts):
   * what an upstream answer holds here, from its first byte read to its last taken by the client's
   * socket. None: unbounded (each answer is still bounded by `maxResponseBytes`).
   */
  answerBudget?: AnswerBudget;
}

/** What the owner tells the front door (audit, logs). */
export type OwnerEvent =
  | "upstream_credentials"
  | "bind_failed"
  | "client_too_slow"
  | "lifetime_ended"
  /** An upstream refused the request as another identity's session (a stdio child told another identity). */
  | "session_mismatch";

export interface ResponseOwner {
  readonly plan: ResponsePlan;
  readonly admission: Admission;
  /** True once the client left or the stream's lifetime ended (credential expiry, revocation). */
  readonly aborted: boolean;
  /** Run `fn` once on abort (at once if already aborted); returns the un-registration. Cheap. */
  onAbort(fn: () => void): () => void;
  /** The same as an AbortSignal, made on first use (an AbortSignal is costly on Node 20). */
  readonly signal: AbortSignal;
  /** The status sent (0 until the head is out). */
  readonly status: number;
  readonly headersSent: boolean;
  /**
   * End the stream at this time (epoch seconds). `upstream`: what ends is the identity conveyed to
   * the upstream, not the caller's credential — an answer not yet begun is then a 502
   * (`identity_unavailable`, the caller may retry), never a 401 that sends it to re-authenticate.
   */
  endAt(epochSeconds: number, what?: "credential" | "upstream"): void;
  /**
   * Watch the caller's credential while a stream is open: at its expiry, or when a gate watcher
   * (key revocation) fires, the stream ends. Done by the owner when it opens an SSE stream; the
   * in-process adapter calls it when it hands the response to the app.
   */
  armLifetime(): void;
  /**
   * The same, if the response is still open after `ms`: a request the upstream takes long over
   * (one JSON answer at the end, or a stdio child's JSON channel) is ended when its credential is
   * revoked or expires while it waits. Quick answers never arm anything.
   */
  armLifetimeAfter(ms: number): void;
  /** Answer a refusal or failure (rendered by core/challenge.ts); ends an open stream instead. */
  refuse(denial: Denial): void;
  /**
   * The upstream's head arrived: bind a minted session or forget an ended one. False when the head
   * must not reach the client (the session could not be bound: 503 was answered).
   */
  bind(status: number, sessionId: string | undefined): Promise<boolean>;
  /** Relay an HTTP upstream's answer (status, headers, body), mapped by `ids`. */
  relay(upstream: UpstreamAnswer, ids: WireIds, options: RelayOptions): Promise<RelayResult>;
  /** Open the channel that answers a POST to a stdio child (SSE when the client accepts it). */
  channel(headers: Record<string, string>): Channel;
  /** Open the standalone SSE stream (GET). */
  stream(headers: Record<string, string>): Channel;
  /** A head-only answer (202 for notifications, 200 for DELETE). */
  empty(status: number, headers?: Record<string, string>): void;
  /** The plan's own answer: every request answered by the gate (200), or refused notifications (202). */
  answerLocally(headers?: Record<string, string>): void;
  /** For in-process servers: merge the gate's own answers (refused batch elements) into their response. */
  mergeLocalAnswers(): void;
  /** Tell the front door an upstream refused the request as another identity's session (audited). */
  event(event: "session_mismatch"): void;
  /**
   * Whether the caller's answers not yet taken by their clients leave room for one more answer
   * (the answer budget): undefined, or the refusal to answer before anything is forwarded — past
   * this point the call would run and its answer could only be dropped.
   */
  roomForAnswer(): Denial | undefined;
}

/** True when the request's `Accept` names `type` (e.g. "text/event-stream"). */
export function accepts(req: IncomingMessage, type: string): boolean {
  const a = req.headers.accept;
  return typeof a === "string" && a.toLowerCase().includes(type);
}

/**
 * Take ownership of `res` for one admitted request.
 *
 * @example
 * const owner = createResponseOwner({ req, res, gate, admission, plan });
 * if (plan.answer !== "forward") return owner.answerLocally();
 */
export function createResponseOwner(o: ResponseOwnerOptions): ResponseOwner {
  return new Owner(o);
}

// A class, not closures: one is made per request on the hot path (and AbortSignal is costly on
// Node 20: the abort signal is made only when someone asks for it, lifetime listeners only when a
// stream opens).
class Owner implements ResponseOwner, RelayHost, ChannelHost {
  readonly plan: ResponsePlan;
  readonly admission: Admission;
  readonly #o: ResponseOwnerOptions;
  readonly #res: ServerResponse;
  #aborted = false;
  #abortFns: Array<() => void> | undefined;
  #signal: AbortController | undefined;
  #sse = false;
  #armed = false;
  #timers: NodeJS.Timeout[] = [];
  #watched: AbortSignal[] = [];
  #ended: AbortController | undefined;
  /** Characters of answer this response holds of the answer budget. */
  #held = 0;

  constructor(o: ResponseOwnerOptions) {
    this.#o = o;
    this.#res = o.res;
    this.plan = o.plan;
    this.admission = o.admission;
    o.res.once("close", this.#onClose);
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get signal(): AbortSignal {
    if (!this.#signal) {
      this.#signal = new AbortController();
      if (this.#aborted) this.#signal.abort();
    }
    return this.#signal.signal;
  }

  onAbort(fn: () => void): () => void {
    if (this.#aborted) {
      fn();
      return () => {};
    }
    if (!this.#abortFns) this.#abortFns = [];
    const fns = this.#abortFns;
    fns.push(fn);
    return () => {
      const i = fns.indexOf(fn);
      if (i !== -1) fns.splice(i, 1);
    };
  }

  get status(): number {
    return this.#res.headersSent ? this.#res.statusCode : 0;
  }

  get headersSent(): boolean {
    return this.#res.headersSent;
  }

  #abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#signal?.abort();
    for (const fn of this.#abortFns?.splice(0) ?? []) fn();
  }

  readonly #onClose = () => {
    if (!this.#res.writableFinished) this.#abort();
    unflushed.delete(this);
    this.release(this.#held);
    for (const t of this.#timers) clearTimeout(t);
    for (const w of this.#watched) w.removeEventListener("abort", this.#onLifetimeEnd);
    this.#ended?.abort();
  };

  // RFC 6750 §3 / issue 13: a credential that stops being acceptable ends its open stream.
  readonly #onLifetimeEnd = () => this.#end("credential");

  #end(what: "credential" | "upstream"): void {
    if (this.#aborted) return;
    this.#abort();
    if (what === "credential") this.#o.onEvent?.("lifetime_ended");
    if (this.#res.headersSent) this.endStream();
    else
      this.refuse(what === "credential" ? { kind: "credential_expired" } : { kind: "identity_unavailable" });
  }

  /** At the caller's credential expiry and the gate's watchers (key revocation), end the stream. */
  armLifetime(): void {
    if (this.#armed || this.#res.destroyed) return;
    this.#armed = true;
    const exp = this.admission.identity.expiresAt;
    if (exp !== undefined) this.endAt(exp);
    const watchers = this.#o.gate.options.watchers;
    if (!watchers?.length) return;
    // Watchers learn when the response is over (`until`), so they stop watching.
    this.#ended = new AbortController();
    for (const w of watchers) {
      const signal = w(this.admission, this.#ended.signal);
      if (!signal) continue;
      if (signal.aborted) queueMicrotask(this.#onLifetimeEnd);
      else signal.addEventListener("abort", this.#onLifetimeEnd, { once: true });
      this.#watched.push(signal);
    }
  }

  armLifetimeAfter(ms: number): void {
    if (this.#armed) return;
    this.#timers.push(setTimeout(() => this.armLifetime(), ms));
  }

  endAt(epochSeconds: number, what: "credential" | "upstream" = "credential"): void {
    const ms = Math.max(0, epochSeconds * 1000 - Date.now());
    // setTimeout holds at most 2^31-1 ms (~24.8 days); a later end is beyond any stream.
    if (ms < 2 ** 31 - 1) this.#timers.push(setTimeout(() => this.#end(what), ms));
  }

  /** End an open stream: cleanly for SSE, cut for anything else. */
  endStream(): void {
    if (this.#res.writableEnded) return;
    // SSE: end cleanly; a client discards a torn last event (WHATWG HTML §9.2.6). Anything else
    // would pass a truncated body off as complete: cut it.
    if (this.#sse) this.#res.end();
    else this.#res.destroy();
  }

  refuse(denial: Denial): void {
    if (this.#res.headersSent) {
      this.endStream();
      return;
    }
    const spec = this.#o.gate.render(denial);
    this.#res.writeHead(spec.status, spec.headers).end(spec.body);
  }

  /** Wait until the client has read what we hold, the stream ends, or it stays unread too long. */
  drained(): Promise<void> {
    const res = this.#res;
    if (!res.writableNeedDrain || res.destroyed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        // The client holds its socket open and does not read: end its stream (bounded in time,
        // as the buffers bound it in space).
        this.#o.onEvent?.("client_too_slow");
        res.destroy();
      }, this.#o.slowClientMs ?? 60_000);
      const done = () => {
        clearTimeout(timer);
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.once("drain", done);
      res.once("close", done);
    });
  }

  async bind(status: number, sessionId: string | undefined): Promise<boolean> {
    try {
      await this.#o.gate.onResponse(this.admission, {
        status,
        method: this.admission.method,
        ...(sessionId ? { sessionId } : {}),
      });
      return true;
    } catch (err) {
      // A session that cannot be bound must not reach the client (fail closed: 503). A full share
      // or store (issue 14 item 3: checked before forwarding, again atomically here) says when.
      if (!(this.plan.bindSession && sessionId)) return true;
      this.#o.onEvent?.("bind_failed");
      this.refuse(
        err instanceof SessionLimitError
          ? { kind: "session_limit", scope: err.scope, retryAfterSec: err.retryAfterSec }
          : { kind: "store_unavailable" },
      );
      return false;
    }
  }

  relay(up: UpstreamAnswer, ids: WireIds, options: RelayOptions): Promise<RelayResult> {
    return relayUpstream(this, up, ids, options);
  }

  channel(headers: Record<string, string>): Channel {
    return accepts(this.#o.req, "text/event-stream")
      ? this.stream(headers)
      : new JsonChannel(this, this.#res, headers);
  }

  stream(headers: Record<string, string>): Channel {
    this.#sse = true;
    this.#res.writeHead(200, { ...SSE_HEAD, ...headers });
    this.#res.flushHeaders();
    this.armLifetime();
    return new SseChannel(this, this.#res);
  }

  /** See http/local-answers.ts. */
  mergeLocalAnswers(): void {
    mergeLocalAnswers(this.#res, this.plan.localResponses);
  }

  get res(): ServerResponse {
    return this.#res;
  }

  markSse(): void {
    this.#sse = true;
  }

  event(event: "upstream_credentials" | "session_mismatch"): void {
    this.#o.onEvent?.(event);
  }

  roomForAnswer(): Denial | undefined {
    const budget = this.#o.answerBudget;
    if (!budget) return undefined;
    const caller = this.admission.identity.principal;
    if (budget.check(caller, Math.min(this.maxResponseBytes, budget.perCaller)) === "caller")
      return { kind: "in_flight_limit", what: "unread answers", retryAfterSec: 1 };
    if (budget.check(caller, 0) === "full") return { kind: "capacity", message: "too many unread answers" };
    return undefined;
  }

  hold(n: number): "ok" | "caller" | "full" {
    const budget = this.#o.answerBudget;
    if (!budget || n <= 0 || this.#res.destroyed) return "ok";
    const taken = budget.take(this.admission.identity.principal, n);
    if (taken === "ok") this.#held += n;
    return taken;
  }

  release(n: number): void {
    const back = Math.min(n, this.#held);
    if (back <= 0) return;
    this.#held -= back;
    this.#o.answerBudget?.release(this.admission.identity.principal, back);
  }

  written(): void {
    const res = this.#res;
    // What it holds is given back at 'close' (which follows 'finish': the client's socket took it).
    // Until then the client must take it within the slow-client bound, as a stream's reader must:
    // a JSON answer nobody reads would otherwise hold its memory for as long as the socket stays.
    if (!res.writableFinished && !res.destroyed) watchUnflushed(this, this.#o.slowClientMs ?? 60_000);
  }

  /**
   * Bytes of the written answer the client's socket has not taken yet. A large write is taken by
   * the kernel piece by piece, which only libuv's write queue shows (`writableLength` drops once
   * the whole write is done): that queue when the socket has one, else `writableLength`.
   */
  get unflushed(): number {
    const handle = (this.#res.socket as { _handle?: { writeQueueSize?: unknown } } | null)?._handle;
    const queued = handle?.writeQueueSize;
    return typeof queued === "number"
      ? queued + this.#res.writableLength - (this.#res.socket?.writableLength ?? 0)
      : this.#res.writableLength;
  }

  /** Called by the sweeper: the written answer was not taken within the slow-client bound. */
  tooSlow(): void {
    if (this.#res.destroyed || this.#res.writableFinished) return;
    this.#o.onEvent?.("client_too_slow");
    this.#res.destroy();
  }

  get maxResponseBytes(): number {
    return this.#o.maxResponseBytes ?? DEFAULT_MAX_RESPONSE;
  }

  empty(status: number, headers: Record<string, string> = {}): void {
    if (this.#res.headersSent) return;
    this.#res.writeHead(status, headers).end();
  }

  answerLocally(headers: Record<string, string> = {}): void {
    if (this.#res.headersSent) return;
    if (this.plan.localResponses.length === 0) {
      this.#res.writeHead(202, headers).end();
      return;
    }
    // Local answers exist only for batches (a lone refused request is a denial): answer an array.
    this.#res
      .writeHead(200, { "content-type": "application/json", ...headers })
      .end(JSON.stringify(this.plan.localResponses));
  }
}

const DEFAULT_MAX_RESPONSE = 8 * 1024 * 1024;

/**
 * Responses whose answer is written whole but not yet taken by the client's socket, with the time
 * they must be taken by. One sweeper for all of them: a timer per response would cost every
 * request (its bytes are still corked in the socket when the answer is written).
 */
const unflushed = new Map<Owner, { deadline: number; withinMs: number; left: number }>();
let sweeper: NodeJS.Timeout | undefined;

function watchUnflushed(owner: Owner, withinMs: number): void {
  unflushed.set(owner, { deadline: Date.now() + withinMs, withinMs, left: Number.POSITIVE_INFINITY });
  if (sweeper) return;
  sweeper = setInterval(sweepUnflushed, SWEEP_MS);
  sweeper.unref();
}

function sweepUnflushed(): void {
  const now = Date.now();
  for (const [owner, w] of unflushed) {
    // A client that keeps taking the answer, however slowly, is not too slow: the bound counts
    // from its last progress, as a stream's does from its last drain.
    const left = owner.unflushed;
    if (left < w.left) {
      w.left = left;
      w.deadline = now + w.withinMs;
      continue;
    }
    if (now < w.deadline) continue;
    unflushed.delete(owner);
    owner.tooSlow();
  }
  if (unflushed.size === 0 && sweeper) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

/** How often written answers are checked against the slow-client bound (its resolution). */
const SWEEP_MS = 250;
