import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
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
  /** Extra end of life for open streams (e.g. the upstream identity's expiry). */
  lifetime?: AbortSignal;
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
  /** Aborted when the client leaves or the stream's lifetime ends (credential expiry, revocation). */
  readonly signal: AbortSignal;
  /** The status sent (0 until the head is out). */
  readonly status: number;
  readonly headersSent: boolean;
  /** End the stream at this time (epoch seconds), e.g. when the upstream identity expires. */
  endAt(epochSeconds: number): void;
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
  const { req, res, gate, admission, plan } = o;
  const maxResponseBytes = o.maxResponseBytes ?? 8 * 1024 * 1024;
  const slowClientMs = o.slowClientMs ?? 60_000;
  const method = admission.method;
  // One controller per request: aborted when the client leaves or the stream's lifetime ends.
  const stop = new AbortController();
  const signal = stop.signal;
  let sse = false;
  let lifetimeTimer: NodeJS.Timeout | undefined;
  // RFC 6750 §3 / issue 13: a credential that stops being acceptable ends its open stream.
  const onLifetimeEnd = () => {
    if (signal.aborted) return;
    stop.abort(new Error("credential no longer acceptable"));
    o.onEvent?.("lifetime_ended");
    if (res.headersSent) endStream();
    else refuse({ kind: "credential_expired" });
  };
  // Watchers (key revocation) learn when the response is over, so they stop watching.
  const ended = gate.options.watchers?.length ? new AbortController() : undefined;
  const lifetimes = [gate.watch(admission, ended?.signal), o.lifetime].filter((x): x is AbortSignal => !!x);
  for (const l of lifetimes) {
    if (l.aborted) queueMicrotask(onLifetimeEnd);
    else l.addEventListener("abort", onLifetimeEnd, { once: true });
  }
  res.once("close", () => {
    if (!res.writableFinished && !signal.aborted) stop.abort(new Error("client closed the connection"));
    clearTimeout(lifetimeTimer);
    for (const l of lifetimes) l.removeEventListener("abort", onLifetimeEnd);
    ended?.abort();
  });

  function endStream(): void {
    if (res.writableEnded) return;
    // SSE: end cleanly; a client discards a torn last event (WHATWG HTML §9.2.6). Anything else
    // would pass a truncated body off as complete: cut it.
    if (sse) res.end();
    else res.destroy();
  }

  function refuse(denial: Denial): void {
    if (res.headersSent) {
      endStream();
      return;
    }
    const spec = gate.render(denial);
    res.writeHead(spec.status, spec.headers).end(spec.body);
  }

  function writeHead(status: number, headers: Record<string, string | string[]>): void {
    res.writeHead(status, headers);
  }

  /** Wait until the client has read what we hold, the stream ends, or it stays unread too long. */
  function drained(): Promise<void> {
    if (!res.writableNeedDrain || res.destroyed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        // The client holds its socket open and does not read: end its stream (bounded in time,
        // as the buffers bound it in space).
        o.onEvent?.("client_too_slow");
        res.destroy();
      }, slowClientMs);
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

  async function bind(status: number, sessionId: string | undefined): Promise<boolean> {
    try {
      await gate.onResponse(admission, { status, method, ...(sessionId ? { sessionId } : {}) });
      return true;
    } catch (err) {
      // A session that cannot be bound must not reach the client (fail closed: 503). A full share
      // or store (issue 14 item 3: checked before forwarding, again atomically here) says when.
      if (!(plan.bindSession && sessionId)) return true;
      o.onEvent?.("bind_failed");
      refuse(
        err instanceof SessionLimitError
          ? { kind: "session_limit", scope: err.scope, retryAfterSec: err.retryAfterSec }
          : { kind: "store_unavailable" },
      );
      return false;
    }
  }

  function relayedHeaders(
    up: Record<string, string | string[] | undefined>,
  ): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up)) {
      if (v !== undefined && RELAYED_HEADERS.has(k.toLowerCase())) out[k.toLowerCase()] = v;
    }
    return out;
  }

  async function relay(
    up: { status: number; headers: Record<string, string | string[] | undefined>; body: Readable },
    ids: WireIds,
    options: { idleTimeoutMs: number },
  ): Promise<RelayResult> {
    const { status, body } = up;
    // Every path below consumes the body or destroys it; a destroyed body nobody reads emits
    // 'error', which unhandled would crash the process.
    body.on("error", () => {});
    if (status === 401 || status === 403) {
      // The upstream's challenge concerns the gateway's own credential: relaying it would point our
      // caller at another authorization server (a confused deputy). Issue 13 item 5.
      body.destroy();
      o.onEvent?.("upstream_credentials");
      refuse({ kind: "upstream_credentials" });
      return "refused";
    }
    if (status >= 300 && status < 400) {
      // Redirects are never followed nor relayed: the client would carry its credential elsewhere.
      body.destroy();
      refuse({ kind: "upstream_malformed" });
      return "refused";
    }
    const sessionHeader = up.headers["mcp-session-id"];
    const sessionId = typeof sessionHeader === "string" ? sessionHeader : undefined;
    if (!(await bind(status, sessionId))) {
      body.destroy();
      return "refused";
    }
    const headers = relayedHeaders(up.headers);
    const contentType = String(up.headers["content-type"] ?? "").toLowerCase();
    const expectsAnswers = plan.forward.some((m) => m.type === "request") || method === "GET";
    try {
      if (contentType.startsWith("text/event-stream"))
        return await relaySse(status, headers, body, ids, method);
      if (contentType.startsWith("application/json")) {
        return await relayJson(status, headers, body, ids, options.idleTimeoutMs);
      }
      if (status === 202 || (status >= 200 && status < 300 && !expectsAnswers)) {
        body.destroy();
        if (plan.localResponses.length > 0) return sendJson(200, headers, [...plan.localResponses]);
        writeHead(status, headers);
        res.end();
        return "ok";
      }
      if (status >= 200 && status < 300) {
        // A success we cannot parse cannot be mapped back or filtered: never relay it (fail closed).
        body.destroy();
        refuse({ kind: "upstream_malformed" });
        return "refused";
      }
      body.destroy();
      if (status < 500) {
        // A protocol answer in another format (405 to a GET on a stateless server, 404, 406…): the
        // client needs the status; the body (upstream detail) stays here.
        delete headers["content-type"];
        writeHead(status, headers);
        res.end();
        return "ok";
      }
      refuse(status === 504 ? { kind: "upstream_timeout" } : { kind: "upstream_unavailable" });
      return "refused";
    } catch (err) {
      body.destroy();
      if (signal.aborted) {
        endStream();
        return "aborted";
      }
      const timeout = (err as Error)?.message === "upstream body stalled";
      if (!res.headersSent) refuse(timeout ? { kind: "upstream_timeout" } : { kind: "upstream_unavailable" });
      else endStream();
      return timeout ? "timeout" : "error";
    }
  }

  function sendJson(status: number, headers: Record<string, string | string[]>, value: unknown): RelayResult {
    headers["content-type"] = "application/json";
    writeHead(status, headers);
    res.end(JSON.stringify(value));
    return "ok";
  }

  async function relayJson(
    status: number,
    headers: Record<string, string | string[]>,
    body: Readable,
    ids: WireIds,
    idleTimeoutMs: number,
  ): Promise<RelayResult> {
    const text = await readBounded(body, maxResponseBytes, idleTimeoutMs);
    let value: unknown;
    if (text.trim() === "") {
      if (plan.localResponses.length > 0) return sendJson(200, headers, [...plan.localResponses]);
      writeHead(status, headers);
      res.end();
      return "ok";
    }
    try {
      value = JSON.parse(text);
    } catch {
      refuse({ kind: "upstream_malformed" });
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
      refuse({ kind: "upstream_malformed" });
      return "refused";
    }
    return sendJson(status === 202 ? 200 : status, headers, out);
  }

  async function relaySse(
    status: number,
    headers: Record<string, string | string[]>,
    body: Readable,
    ids: WireIds,
    httpMethod: string,
  ): Promise<RelayResult> {
    sse = true;
    writeHead(status, { ...headers, ...SSE_HEAD });
    // A standalone GET stream may stay silent for long: send its head at once. A POST's first event
    // normally follows at once; its head then goes out in the same write, after 50 ms on its own.
    let headTimer: NodeJS.Timeout | undefined;
    if (httpMethod === "GET") res.flushHeaders();
    else headTimer = setTimeout(() => res.flushHeaders(), 50);
    const parser = new SseParser();
    const decoder = new TextDecoder("utf-8");
    let prefix = plan.localResponses.map((r) => formatSseEvent(JSON.stringify(r))).join("");
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        let out = prefix;
        prefix = "";
        for (const ev of parser.push(decoder.decode(chunk, { stream: true }))) out += mapEvent(ev, ids);
        if (out === "") continue;
        clearTimeout(headTimer);
        if (!res.write(out)) await drained();
        if (res.destroyed) return signal.aborted ? "aborted" : "error";
      }
    } finally {
      clearTimeout(headTimer);
    }
    // WHATWG HTML §9.2.6: an event not ended by a blank line at end of stream is discarded by the
    // client; it is dropped here too (it could hold an unmapped, unfiltered answer).
    parser.flush();
    res.end(prefix || undefined);
    return "ok";
  }

  function mapEvent(ev: { raw: string; data?: string; id?: string; event?: string }, ids: WireIds): string {
    if (ev.data === undefined) return ev.raw;
    let value: unknown;
    try {
      value = JSON.parse(ev.data);
    } catch {
      return ev.raw;
    }
    const { value: mapped, changed } = ids.inboundValue(value, plan.visible, plan.era);
    if (!changed) return ev.raw;
    const meta = {
      ...(ev.id !== undefined ? { id: ev.id } : {}),
      ...(ev.event !== undefined ? { event: ev.event } : {}),
    };
    // A dropped answer keeps its event id (so resumption still counts it) but carries no message.
    if (mapped === undefined || (Array.isArray(mapped) && mapped.length === 0))
      return ev.id !== undefined ? `id: ${ev.id}\n\n` : "";
    return formatSseEvent(JSON.stringify(mapped), meta);
  }

  function openSse(headers: Record<string, string>): Channel {
    sse = true;
    writeHead(200, { ...SSE_HEAD, ...headers });
    res.flushHeaders();
    return {
      sse: true,
      get open() {
        return !res.writableEnded && !res.destroyed;
      },
      send(text) {
        if (res.writableEnded || res.destroyed) return true;
        return res.write(`event: message\ndata: ${text}\n\n`);
      },
      drained,
      close() {
        if (!res.writableEnded) res.end();
      },
    };
  }

  function openJson(headers: Record<string, string>): Channel {
    const texts: string[] = [];
    let bytes = 0;
    let done = false;
    return {
      sse: false,
      get open() {
        return !done && !res.destroyed;
      },
      send(text) {
        if (done) return true;
        bytes += text.length;
        if (bytes > maxResponseBytes) {
          // One JSON body is bounded like an HTTP upstream's: past it, the answer is refused.
          done = true;
          refuse({ kind: "upstream_malformed" });
          return true;
        }
        texts.push(text);
        return true;
      },
      drained: () => Promise.resolve(),
      close() {
        if (done) return;
        done = true;
        if (res.destroyed || res.headersSent) return;
        const body = texts.length === 1 ? texts[0]! : `[${texts.join(",")}]`;
        res.writeHead(200, { "content-type": "application/json", ...headers }).end(body);
      },
    };
  }

  return {
    plan,
    admission,
    signal,
    get status() {
      return res.headersSent ? res.statusCode : 0;
    },
    get headersSent() {
      return res.headersSent;
    },
    refuse,
    endAt(epochSeconds) {
      clearTimeout(lifetimeTimer);
      const ms = Math.max(0, epochSeconds * 1000 - Date.now());
      // setTimeout holds at most 2^31-1 ms (~24.8 days); a later end is beyond any stream.
      if (ms < 2 ** 31 - 1) lifetimeTimer = setTimeout(onLifetimeEnd, ms);
    },
    bind,
    relay,
    channel: (headers) => (accepts(req, "text/event-stream") ? openSse(headers) : openJson(headers)),
    stream: openSse,
    empty(status, headers = {}) {
      if (res.headersSent) return;
      res.writeHead(status, headers).end();
    },
    answerLocally(headers = {}) {
      if (res.headersSent) return;
      if (plan.localResponses.length === 0) {
        res.writeHead(202, headers).end();
        return;
      }
      // Local answers exist only for batches (a lone refused request is a denial): answer an array.
      res
        .writeHead(200, { "content-type": "application/json", ...headers })
        .end(JSON.stringify(plan.localResponses));
    },
  };
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
