import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { type FailureDenial, renderRpcError } from "../core/challenge.js";
import { SessionLimitError } from "../core/errors.js";
import type { Denial, JsonRpcId } from "../core/outcome.js";
import type { Admission, Gate, ResponsePlan } from "../gate/gate.js";
import { formatSseEvent, SseParser } from "../mcp/sse.js";
import type { WireIds } from "../mcp/wire-ids.js";

/**
 * The one owner of a response after admission (issue 13): the only code that writes the head and
 * the body of an MCP answer, whatever produced it — an HTTP upstream, a stdio child, or the gate
 * itself. It binds minted sessions on the head, maps upstream statuses (401/403 → 502, redirects
 * refused), keeps only safe upstream headers, filters every list answer, merges the gate's own
 * answers, honours backpressure (a client that does not read stops the upstream being read), and
 * renders every failure through core/challenge.ts.
 */

/** Upstream response headers a client may see (allow-list: cookies, challenges, hop-by-hop stay here). */
const RELAYED_HEADERS = new Set([
  "content-type",
  "cache-control",
  "mcp-session-id",
  "mcp-protocol-version",
  "retry-after",
  "allow",
  "vary",
  "content-language",
]);

/** How the answer ended, for logs and metrics. */
export type RelayResult = "ok" | "aborted" | "timeout" | "error" | "refused";

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
  onEvent?(event: "upstream_credentials" | "bind_failed" | "client_too_slow" | "lifetime_ended"): void;
}

/** One HTTP response carrying messages from a stdio child (SSE or one JSON body). */
export interface Channel {
  readonly sse: boolean;
  readonly open: boolean;
  /** Send one JSON-RPC message text; false when the client is not keeping up (wait for `drained`). */
  send(text: string): boolean;
  /** Resolves when the client has read what was sent (or the stream ended). */
  drained(): Promise<void>;
  close(): void;
}

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
  /** End the stream at this time (epoch seconds), e.g. when the upstream identity expires. */
  endAt(epochSeconds: number): void;
  /**
   * Watch the caller's credential while a stream is open: at its expiry, or when a gate watcher
   * (key revocation) fires, the stream ends. Done by the owner when it opens an SSE stream; the
   * in-process adapter calls it when it hands the response to the app.
   */
  armLifetime(): void;
  /** Answer a refusal or failure (rendered by core/challenge.ts); ends an open stream instead. */
  refuse(denial: Denial): void;
  /**
   * The upstream's head arrived: bind a minted session or forget an ended one. False when the head
   * must not reach the client (the session could not be bound: 503 was answered).
   */
  bind(status: number, sessionId: string | undefined): Promise<boolean>;
  /** Relay an HTTP upstream's answer (status, headers, body), mapped by `ids`. */
  relay(
    upstream: { status: number; headers: Record<string, string | string[] | undefined>; body: Readable },
    ids: WireIds,
    options: { idleTimeoutMs: number },
  ): Promise<RelayResult>;
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
}

/** True when the request's `Accept` names `type` (e.g. "text/event-stream"). */
export function accepts(req: IncomingMessage, type: string): boolean {
  const a = req.headers.accept;
  return typeof a === "string" && a.toLowerCase().includes(type);
}

const SSE_HEAD = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
} as const;

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
class Owner implements ResponseOwner {
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
    for (const t of this.#timers) clearTimeout(t);
    for (const w of this.#watched) w.removeEventListener("abort", this.#onLifetimeEnd);
    this.#ended?.abort();
  };

  // RFC 6750 §3 / issue 13: a credential that stops being acceptable ends its open stream.
  readonly #onLifetimeEnd = () => {
    if (this.#aborted) return;
    this.#abort();
    this.#o.onEvent?.("lifetime_ended");
    if (this.#res.headersSent) this.#endStream();
    else this.refuse({ kind: "credential_expired" });
  };

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

  endAt(epochSeconds: number): void {
    const ms = Math.max(0, epochSeconds * 1000 - Date.now());
    // setTimeout holds at most 2^31-1 ms (~24.8 days); a later end is beyond any stream.
    if (ms < 2 ** 31 - 1) this.#timers.push(setTimeout(this.#onLifetimeEnd, ms));
  }

  #endStream(): void {
    if (this.#res.writableEnded) return;
    // SSE: end cleanly; a client discards a torn last event (WHATWG HTML §9.2.6). Anything else
    // would pass a truncated body off as complete: cut it.
    if (this.#sse) this.#res.end();
    else this.#res.destroy();
  }

  refuse(denial: Denial): void {
    if (this.#res.headersSent) {
      this.#endStream();
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

  async relay(
    up: { status: number; headers: Record<string, string | string[] | undefined>; body: Readable },
    ids: WireIds,
    options: { idleTimeoutMs: number },
  ): Promise<RelayResult> {
    const { status, body } = up;
    const { plan } = this;
    // Every path below consumes the body or destroys it; a destroyed body nobody reads emits
    // 'error', which unhandled would crash the process.
    body.on("error", () => {});
    if (status === 401 || status === 403) {
      // The upstream's challenge concerns the gateway's own credential: relaying it would point our
      // caller at another authorization server (a confused deputy). Issue 13 item 5.
      body.destroy();
      this.#o.onEvent?.("upstream_credentials");
      this.refuse({ kind: "upstream_credentials" });
      return "refused";
    }
    if (status >= 300 && status < 400) {
      // Redirects are never followed nor relayed: the client would carry its credential elsewhere.
      body.destroy();
      this.refuse({ kind: "upstream_malformed" });
      return "refused";
    }
    const sessionHeader = up.headers["mcp-session-id"];
    const sessionId = typeof sessionHeader === "string" ? sessionHeader : undefined;
    if (!(await this.bind(status, sessionId))) {
      body.destroy();
      return "refused";
    }
    const headers = relayedHeaders(up.headers);
    const contentType = String(up.headers["content-type"] ?? "").toLowerCase();
    const method = this.admission.method;
    const expectsAnswers = method === "GET" || plan.forward.some((m) => m.type === "request");
    try {
      if (contentType.startsWith("text/event-stream"))
        return await this.#relaySse(status, headers, body, ids);
      if (contentType.startsWith("application/json")) {
        return await this.#relayJson(status, headers, body, ids, options.idleTimeoutMs);
      }
      body.destroy();
      if (status === 202 || (status >= 200 && status < 300 && !expectsAnswers)) {
        if (plan.localResponses.length > 0) return this.#sendJson(200, headers, [...plan.localResponses]);
        this.#res.writeHead(status, headers).end();
        return "ok";
      }
      if (status >= 200 && status < 300) {
        // A success we cannot parse cannot be mapped back or filtered: never relay it (fail closed).
        this.refuse({ kind: "upstream_malformed" });
        return "refused";
      }
      if (status < 500) {
        // A protocol answer in another format (405 to a GET on a stateless server, 404, 406…): the
        // client needs the status; the body (upstream detail) stays here.
        delete headers["content-type"];
        this.#res.writeHead(status, headers).end();
        return "ok";
      }
      this.refuse(status === 504 ? { kind: "upstream_timeout" } : { kind: "upstream_unavailable" });
      return "refused";
    } catch (err) {
      body.destroy();
      if (this.#aborted) {
        this.#endStream();
        return "aborted";
      }
      const timeout = (err as Error)?.message === "upstream body stalled";
      if (!this.#res.headersSent)
        this.refuse(timeout ? { kind: "upstream_timeout" } : { kind: "upstream_unavailable" });
      else this.#endStream();
      return timeout ? "timeout" : "error";
    }
  }

  #sendJson(status: number, headers: Record<string, string | string[]>, value: unknown): RelayResult {
    headers["content-type"] = "application/json";
    this.#res.writeHead(status, headers).end(JSON.stringify(value));
    return "ok";
  }

  async #relayJson(
    status: number,
    headers: Record<string, string | string[]>,
    body: Readable,
    ids: WireIds,
    idleTimeoutMs: number,
  ): Promise<RelayResult> {
    const { plan } = this;
    const text = await readBounded(body, this.#o.maxResponseBytes ?? DEFAULT_MAX_RESPONSE, idleTimeoutMs);
    if (text.trim() === "") {
      if (plan.localResponses.length > 0) return this.#sendJson(200, headers, [...plan.localResponses]);
      this.#res.writeHead(status, headers).end();
      return "ok";
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.refuse({ kind: "upstream_malformed" });
      return "refused";
    }
    const mapped = ids.inboundValue(value, plan.visible, plan.era).value;
    let out: unknown = mapped;
    if (plan.localResponses.length > 0) {
      out = [
        ...(Array.isArray(mapped) ? mapped : mapped === undefined ? [] : [mapped]),
        ...plan.localResponses,
      ];
    } else if (mapped === undefined) {
      // The only answer was not ours to relay (an id we never issued): nothing attributable is left.
      this.refuse({ kind: "upstream_malformed" });
      return "refused";
    }
    return this.#sendJson(status === 202 ? 200 : status, headers, out);
  }

  #relaySse(
    status: number,
    headers: Record<string, string | string[]>,
    body: Readable,
    ids: WireIds,
  ): Promise<RelayResult> {
    const res = this.#res;
    this.#sse = true;
    res.writeHead(status, { ...headers, ...SSE_HEAD });
    this.armLifetime();
    // A standalone GET stream may stay silent for long: send its head at once. A POST's first event
    // normally follows at once; its head then goes out in the same write, after 50 ms on its own.
    let headTimer: NodeJS.Timeout | undefined;
    if (this.admission.method === "GET") res.flushHeaders();
    else headTimer = setTimeout(flushHeaders, 50, res);
    const parser = new SseParser();
    // A multi-byte character split across chunks stays whole (string_decoder: native, cheaper per
    // chunk than TextDecoder's streaming mode).
    const decoder = new StringDecoder("utf8");
    // Mapped events wait for the end of the event loop's turn: an answer whose stream ends in the
    // same read (a tools/call, most often) leaves with the response's end, head, event and final
    // chunk in one write; a longer stream is written a turn later. At most one turn's worth of
    // events is held, and while the client does not read the upstream is not read (backpressure).
    let pending = this.plan.localResponses.map((r) => formatSseEvent(JSON.stringify(r))).join("");
    return new Promise<RelayResult>((resolve, reject) => {
      let settled = false;
      let scheduled = false;
      const settle = (finish: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(headTimer);
        body.off("data", onData);
        body.off("end", onEnd);
        body.off("error", onError);
        res.off("close", onClose);
        finish();
      };
      const flush = () => {
        scheduled = false;
        if (settled || res.destroyed || pending === "") return;
        clearTimeout(headTimer);
        const out = pending;
        pending = "";
        if (res.write(out)) return;
        body.pause();
        void this.drained().then(() => {
          if (!settled && !res.destroyed) body.resume();
        });
      };
      const onData = (chunk: Buffer) => {
        try {
          for (const ev of parser.push(decoder.write(chunk))) pending += this.#mapEvent(ev, ids);
        } catch (err) {
          // An event past MAX_SSE_EVENT_BYTES: the stream is cut (relay() ends the response).
          body.destroy();
          settle(() => reject(err));
          return;
        }
        if (pending !== "" && !scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      };
      // WHATWG HTML §9.2.6: an event not ended by a blank line at end of stream is discarded by the
      // client; it is dropped here too (it could hold an unmapped, unfiltered answer).
      const onEnd = () =>
        settle(() => {
          parser.flush();
          if (!res.destroyed) res.end(pending === "" ? undefined : pending);
          resolve("ok");
        });
      const onError = (err: unknown) => settle(() => reject(err));
      const onClose = () =>
        settle(() => {
          body.destroy();
          resolve(this.#aborted ? "aborted" : "error");
        });
      body.on("data", onData);
      body.once("end", onEnd);
      body.once("error", onError);
      res.once("close", onClose);
    });
  }

  #mapEvent(ev: { raw: string; data?: string; id?: string; event?: string }, ids: WireIds): string {
    if (ev.data === undefined) return ev.raw;
    let value: unknown;
    try {
      value = JSON.parse(ev.data);
    } catch {
      return ev.raw;
    }
    const { value: mapped, changed } = ids.inboundValue(value, this.plan.visible, this.plan.era);
    if (!changed) return ev.raw;
    // A dropped answer keeps its event id (so resumption still counts it) but carries no message.
    if (mapped === undefined || (Array.isArray(mapped) && mapped.length === 0))
      return ev.id !== undefined ? `id: ${ev.id}\n\n` : "";
    return formatSseEvent(JSON.stringify(mapped), ev);
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

  /**
   * An in-process SDK server writes the response itself: merge the gate's own answers (refused
   * batch elements) into what it writes, so that the library answers a batch exactly as the gateway
   * does — the allowed elements by the server, the refused ones by the gate, in one response.
   * SSE: the local answers go out as the first events. JSON: appended to the array. 202 (only
   * notifications went on): 200 with the local answers.
   */
  mergeLocalAnswers(): void {
    const local = this.plan.localResponses;
    if (local.length === 0) return;
    const res = this.#res;
    const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => ServerResponse;
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    let mode: "json" | "accepted" | undefined;
    const held: Buffer[] = [];
    const hold = (chunk: unknown) => {
      if (chunk instanceof Uint8Array)
        held.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      else if (typeof chunk === "string") held.push(Buffer.from(chunk));
    };
    const patched = res as unknown as Record<string, (...args: unknown[]) => unknown>;
    patched.writeHead = (...args: unknown[]) => {
      const status = args[0] as number;
      const headers = (args.find((a, i) => i > 0 && a && typeof a === "object" && !Array.isArray(a)) ??
        {}) as Record<string, unknown>;
      // The body changes length: whatever length the server computed no longer holds.
      for (const k of Object.keys(headers)) if (k.toLowerCase() === "content-length") delete headers[k];
      res.removeHeader("content-length");
      const ct = String(
        Object.entries(headers).find(([k]) => k.toLowerCase() === "content-type")?.[1] ??
          res.getHeader("content-type") ??
          "",
      ).toLowerCase();
      if (status === 202) {
        mode = "accepted";
        return writeHead(200, { ...headers, "content-type": "application/json" });
      }
      if (ct.startsWith("text/event-stream")) {
        const r = writeHead(...args);
        write(local.map((m) => formatSseEvent(JSON.stringify(m))).join(""));
        return r;
      }
      if (ct.startsWith("application/json")) mode = "json";
      return writeHead(...args);
    };
    patched.write = (...args: unknown[]) => {
      if (!mode) return write(...args);
      hold(args[0]);
      return true;
    };
    patched.end = (...args: unknown[]) => {
      if (!mode) return end(...args);
      hold(args[0]);
      let answers: unknown[] = [];
      if (mode === "json") {
        try {
          const v = JSON.parse(Buffer.concat(held).toString("utf8")) as unknown;
          answers = Array.isArray(v) ? v : [v];
        } catch {
          answers = [];
        }
      }
      return end(JSON.stringify([...answers, ...local]));
    };
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

function flushHeaders(res: ServerResponse): void {
  res.flushHeaders();
}

function relayedHeaders(
  up: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const k in up) {
    const v = up[k];
    const name = k.toLowerCase();
    if (v !== undefined && RELAYED_HEADERS.has(name)) out[name] = v;
  }
  return out;
}

/** SSE framing as the SDK's server writes it (`event: message` + one data line per message). */
class SseChannel implements Channel {
  readonly sse = true;
  readonly #owner: Owner;
  readonly #res: ServerResponse;
  constructor(owner: Owner, res: ServerResponse) {
    this.#owner = owner;
    this.#res = res;
  }
  get open(): boolean {
    return !this.#res.writableEnded && !this.#res.destroyed;
  }
  send(text: string): boolean {
    if (this.#res.writableEnded || this.#res.destroyed) return true;
    return this.#res.write(`event: message\ndata: ${text}\n\n`);
  }
  drained(): Promise<void> {
    return this.#owner.drained();
  }
  close(): void {
    if (!this.#res.writableEnded) this.#res.end();
  }
}

/** A JSON answer: messages are collected and written as one object (or an array) at the end. */
class JsonChannel implements Channel {
  readonly sse = false;
  readonly #owner: Owner;
  readonly #res: ServerResponse;
  readonly #headers: Record<string, string>;
  #texts: string[] = [];
  #bytes = 0;
  #done = false;
  constructor(owner: Owner, res: ServerResponse, headers: Record<string, string>) {
    this.#owner = owner;
    this.#res = res;
    this.#headers = headers;
  }
  get open(): boolean {
    return !this.#done && !this.#res.destroyed;
  }
  send(text: string): boolean {
    if (this.#done) return true;
    this.#bytes += text.length;
    if (this.#bytes > this.#owner.maxResponseBytes) {
      // One JSON body is bounded like an HTTP upstream's: past it, the answer is refused.
      this.#done = true;
      this.#owner.refuse({ kind: "upstream_malformed" });
      return true;
    }
    this.#texts.push(text);
    return true;
  }
  drained(): Promise<void> {
    return Promise.resolve();
  }
  close(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#res.destroyed || this.#res.headersSent) return;
    const body = this.#texts.length === 1 ? this.#texts[0]! : `[${this.#texts.join(",")}]`;
    this.#res.writeHead(200, { "content-type": "application/json", ...this.#headers }).end(body);
  }
}

/** The JSON-RPC error text answering one request inside an open stream. */
export function failureMessage(id: JsonRpcId, denial: FailureDenial): string {
  return renderRpcError(id, denial);
}

async function readBounded(body: Readable, limit: number, idleMs: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  let idle: NodeJS.Timeout | undefined;
  const touch = () => {
    clearTimeout(idle);
    // Any body but SSE must keep arriving: an upstream that sends a head and stalls must not pin us.
    idle = setTimeout(() => body.destroy(new Error("upstream body stalled")), idleMs);
  };
  touch();
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      touch();
      size += chunk.length;
      if (size > limit) throw new RangeError("upstream response too large");
      chunks.push(chunk);
    }
  } finally {
    clearTimeout(idle);
  }
  return Buffer.concat(chunks).toString("utf8");
}
