import type { ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { type FailureDenial, renderRpcError } from "../core/challenge.js";
import type { Denial, JsonRpcId } from "../core/outcome.js";
import type { Admission, ResponsePlan } from "../gate/gate.js";
import { formatSseEvent, SseParser } from "../mcp/sse.js";
import type { WireIds } from "../mcp/wire-ids.js";
import { MESSAGE_EVENT, SSE_HEAD } from "./channels.js";

/**
 * Relaying an HTTP upstream's answer, for the response owner (http/response-owner.ts): statuses
 * mapped (401/403 → 502, redirects refused), only safe headers kept, a minted session bound on the
 * head, every message mapped back from its wire id and filtered, the gate's own answers merged,
 * and backpressure honoured (while the client does not read, the upstream is not read).
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

/** Bounds of one relay. */
export interface RelayOptions {
  /** Longest wait between two chunks of a JSON body (then 504, or a cut). */
  idleTimeoutMs: number;
  /**
   * Longest silence of a POST's SSE answer (no byte from the upstream while the client keeps up)
   * before the gateway gives it up; 0: none. A standalone GET stream is quiet by nature: unbounded.
   */
  streamIdleMs?: number;
  /** Wire ids of the requests this POST forwarded: answered by the gateway when their stream is given up. */
  requests?: readonly string[];
  /** Told the wire ids of requests the gateway gave up while the upstream may still work on them. */
  onGiveUp?(wireIds: string[]): void;
}

/** An HTTP upstream's answer, as undici hands it over. */
export interface UpstreamAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/** What the relay needs of the response owner. */
export interface RelayHost {
  readonly res: ServerResponse;
  readonly plan: ResponsePlan;
  readonly admission: Admission;
  /** The client left, or the stream's lifetime ended. */
  readonly aborted: boolean;
  /** Largest JSON body buffered for rewriting. */
  readonly maxResponseBytes: number;
  bind(status: number, sessionId: string | undefined): Promise<boolean>;
  refuse(denial: Denial): void;
  drained(): Promise<void>;
  /** The response is an SSE stream from now on (ended cleanly rather than cut). */
  markSse(): void;
  /** Hold `n` more characters of answer (see `ResponseOwnerOptions.answerBudget`); why not when spent. */
  hold(n: number): "ok" | "caller" | "full";
  /** `n` held characters were taken by the client's socket. */
  release(n: number): void;
  /**
   * The whole answer is written: what it holds is given back once the client's socket has taken
   * it, and a client that does not take it within the slow-client bound loses its connection.
   */
  written(): void;
  armLifetime(): void;
  endStream(): void;
  event(event: "upstream_credentials"): void;
}

/**
 * Relay `up` to the client through `h`, mapped by `ids`.
 *
 * @example const result = await relayUpstream(owner, { status, headers, body }, ids, { idleTimeoutMs });
 */
export async function relayUpstream(
  h: RelayHost,
  up: UpstreamAnswer,
  ids: WireIds,
  options: RelayOptions,
): Promise<RelayResult> {
  const { status, body } = up;
  const { plan } = h;
  // Every path below consumes the body or destroys it; a destroyed body nobody reads emits
  // 'error', which unhandled would crash the process.
  body.on("error", () => {});
  if (status === 401 || status === 403) {
    // The upstream's challenge concerns the gateway's own credential: relaying it would point our
    // caller at another authorization server (a confused deputy). Issue 13 item 5.
    body.destroy();
    h.event("upstream_credentials");
    h.refuse({ kind: "upstream_credentials" });
    return "refused";
  }
  if (status >= 300 && status < 400) {
    // Redirects are never followed nor relayed: the client would carry its credential elsewhere.
    body.destroy();
    h.refuse({ kind: "upstream_malformed" });
    return "refused";
  }
  const sessionHeader = up.headers["mcp-session-id"];
  const sessionId = typeof sessionHeader === "string" ? sessionHeader : undefined;
  if (!(await h.bind(status, sessionId))) {
    body.destroy();
    return "refused";
  }
  const headers = relayedHeaders(up.headers);
  const contentType = String(up.headers["content-type"] ?? "").toLowerCase();
  const { expectsAnswers } = plan;
  try {
    if (contentType.startsWith("text/event-stream"))
      return await relaySse(h, status, headers, body, ids, options);
    if (contentType.startsWith("application/json")) {
      return await relayJson(h, status, headers, body, ids, options.idleTimeoutMs);
    }
    body.destroy();
    if (status === 202 || (status >= 200 && status < 300 && !expectsAnswers)) {
      if (plan.localResponses.length > 0) return sendJson(h.res, 200, headers, [...plan.localResponses]);
      h.res.writeHead(status, headers).end();
      return "ok";
    }
    if (status >= 200 && status < 300) {
      // A success we cannot parse cannot be mapped back or filtered: never relay it (fail closed).
      h.refuse({ kind: "upstream_malformed" });
      return "refused";
    }
    if (status < 500) {
      // A protocol answer in another format (405 to a GET on a stateless server, 404, 406…): the
      // client needs the status; the body (upstream detail) stays here.
      delete headers["content-type"];
      h.res.writeHead(status, headers).end();
      return "ok";
    }
    h.refuse(status === 504 ? { kind: "upstream_timeout" } : { kind: "upstream_unavailable" });
    return "refused";
  } catch (err) {
    body.destroy();
    if (h.aborted) {
      h.endStream();
      return "aborted";
    }
    if (err instanceof BudgetSpent && !h.res.headersSent) {
      h.refuse(budgetDenial(err.scope));
      return "refused";
    }
    const timeout = (err as Error)?.message === "upstream body stalled";
    if (!h.res.headersSent)
      h.refuse(timeout ? { kind: "upstream_timeout" } : { kind: "upstream_unavailable" });
    else h.endStream();
    return timeout ? "timeout" : "error";
  }
}

function sendJson(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | string[]>,
  value: unknown,
): RelayResult {
  headers["content-type"] = "application/json";
  res.writeHead(status, headers).end(JSON.stringify(value));
  return "ok";
}

async function relayJson(
  h: RelayHost,
  status: number,
  headers: Record<string, string | string[]>,
  body: Readable,
  ids: WireIds,
  idleTimeoutMs: number,
): Promise<RelayResult> {
  const { plan } = h;
  const text = await readBounded(body, h, idleTimeoutMs);
  if (text.trim() === "") {
    if (plan.localResponses.length > 0) return sendJson(h.res, 200, headers, [...plan.localResponses]);
    h.res.writeHead(status, headers).end();
    return "ok";
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    h.refuse({ kind: "upstream_malformed" });
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
    h.refuse({ kind: "upstream_malformed" });
    return "refused";
  }
  sendJson(h.res, status === 202 ? 200 : status, headers, out);
  h.written();
  return "ok";
}

function relaySse(
  h: RelayHost,
  status: number,
  headers: Record<string, string | string[]>,
  body: Readable,
  ids: WireIds,
  options: RelayOptions,
): Promise<RelayResult> {
  const res = h.res;
  // The client may have left, or the upstream reset, while the head was being bound: their events
  // are gone and would never come again.
  if (body.destroyed || res.destroyed) {
    body.destroy();
    return Promise.resolve(h.aborted ? "aborted" : "error");
  }
  h.markSse();
  res.writeHead(status, { ...headers, ...SSE_HEAD });
  h.armLifetime();
  // A standalone GET stream may stay silent for long: send its head at once. A POST's first event
  // normally follows at once; its head then goes out in the same write, after 50 ms on its own.
  // From then on a POST's answer must keep coming (`streamIdleMs`): an upstream that goes quiet
  // would hold a connection of the pool, and the caller's share of it, for as long as its client
  // waits. Quick answers (most) end before the first tick and never start the idle timer.
  const standalone = h.admission.method === "GET";
  const idleMs = standalone ? 0 : (options.streamIdleMs ?? 0);
  let headOut = standalone;
  let tick: NodeJS.Timeout | undefined;
  let idle: NodeJS.Timeout | undefined;
  if (standalone) res.flushHeaders();
  // An event id makes the stream resumable (the client may GET it again with Last-Event-ID).
  let resumable = false;
  // Characters of the answer received, and given back to the answer budget as written.
  let received = 0;
  let released = 0;
  const parser = new SseParser();
  // A multi-byte character split across chunks stays whole (string_decoder: native, cheaper per
  // chunk than TextDecoder's streaming mode).
  const decoder = new StringDecoder("utf8");
  // Mapped events wait for the end of the event loop's turn: an answer whose stream ends in the
  // same read (a tools/call, most often) leaves with the response's end, head, event and final
  // chunk in one write; a longer stream is written a turn later. At most HOLD_MAX characters are
  // held, and while the client does not read the upstream is not read (backpressure).
  let pending = h.plan.localResponses.map((r) => formatSseEvent(JSON.stringify(r))).join("");
  return new Promise<RelayResult>((resolve, reject) => {
    let settled = false;
    let scheduled = false;
    const settle = (finish: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(tick);
      clearTimeout(idle);
      body.off("data", onData);
      body.off("end", onEnd);
      body.off("error", onError);
      res.off("close", onClose);
      finish();
    };
    // The gateway gives the answer up: its unanswered requests get an error each (their client would
    // otherwise wait to its own timeout), after what was already mapped; the stream then ends. A
    // resumable stream is only ended: its client resumes it (Last-Event-ID) and gets the answers —
    // an error now would be a second answer to the same id then.
    const giveUp = (denial: FailureDenial, result: RelayResult) =>
      settle(() => {
        body.destroy();
        let out = pending;
        if (!resumable) {
          const lost = ids.abandon(options.requests ?? []);
          for (const { clientId } of lost) out += unanswered(clientId, denial);
          // The upstream may still be at work on them: tell it they are given up.
          if (lost.length > 0) options.onGiveUp?.(lost.map((l) => l.wire));
        }
        if (!res.destroyed) res.end(out === "" ? undefined : out);
        h.written();
        resolve(result);
      });
    const onTick = () => {
      if (!headOut) {
        headOut = true;
        res.flushHeaders();
      }
      if (idleMs > 0 && !settled && !seen.serverRequest) idle = setTimeout(onIdle, idleMs);
    };
    const onIdle = () => {
      // Paused for a client that does not read: the silence is ours (the slow-client bound applies).
      if (body.isPaused()) {
        idle?.refresh();
        return;
      }
      giveUp({ kind: "upstream_timeout" }, "timeout");
    };
    // What mapEvent saw: a request from the server (elicitation, sampling, roots) waits on the
    // client — a person may take long to answer — so from then on the idle bound does not apply.
    const seen = { serverRequest: false };
    const flush = () => {
      scheduled = false;
      if (settled || res.destroyed || pending === "") return;
      headOut = true;
      const out = pending;
      pending = "";
      // What this write carries of the answer is given back once the client's socket takes it.
      const carried = received - parser.buffered - released;
      released += carried;
      if (res.write(out, carried > 0 ? () => h.release(carried) : undefined)) return;
      body.pause();
      void h.drained().then(() => {
        if (!settled && !res.destroyed) body.resume();
      });
    };
    const onData = (chunk: Buffer) => {
      idle?.refresh();
      const text = decoder.write(chunk);
      // Held from here until the client's socket takes it (the answer budget): a caller whose
      // unread answers fill its share loses this stream, as a client too slow to read does.
      const held = h.hold(text.length);
      if (held !== "ok") {
        giveUp(
          held === "caller"
            ? { kind: "client_too_slow" }
            : { kind: "capacity", message: "too many unread answers", ran: true },
          "refused",
        );
        return;
      }
      received += text.length;
      try {
        for (const ev of parser.push(text)) {
          if (ev.id !== undefined) resumable = true;
          pending += mapEvent(h.plan, ev, ids, seen);
        }
        if (seen.serverRequest && idle) {
          clearTimeout(idle);
          idle = undefined;
        }
      } catch {
        // An event past MAX_SSE_EVENT_BYTES: the stream is cut, and what it would have answered
        // is lost for good (a replay would carry the same event).
        giveUp({ kind: "upstream_malformed" }, "error");
        return;
      }
      // More than a small answer waits: write it now (and stop reading if the client is behind),
      // so no more than HOLD_MAX is ever held here on top of what the socket buffers.
      if (pending.length >= HOLD_MAX) flush();
      else if (pending !== "" && !scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    };
    // WHATWG HTML §9.2.6: an event not ended by a blank line at end of stream is discarded by the
    // client; it is dropped here too (it could hold an unmapped, unfiltered answer).
    const onEnd = () =>
      settle(() => {
        parser.flush();
        // An upstream may end a resumable stream before its answers (the client resumes it). One
        // without event ids that ends unanswered leaves its client nothing to wait for: say so.
        if (!resumable)
          for (const { clientId } of ids.abandon(options.requests ?? [])) pending += unanswered(clientId);
        if (!res.destroyed) res.end(pending === "" ? undefined : pending);
        h.written();
        resolve("ok");
      });
    // The upstream's connection failed mid-answer. A resumable stream is only ended: its client may
    // resume it and get the answers. Otherwise they are lost: the gateway answers them.
    const onError = (err: unknown) => {
      if (resumable || h.aborted) settle(() => reject(err));
      else giveUp({ kind: "upstream_unavailable" }, "error");
    };
    const onClose = () =>
      settle(() => {
        body.destroy();
        resolve(h.aborted ? "aborted" : "error");
      });
    if (!standalone) tick = setTimeout(onTick, 50);
    body.on("data", onData);
    body.once("end", onEnd);
    body.once("error", onError);
    res.once("close", onClose);
  });
}

/** A JSON-RPC request (or a batch holding one): a message with a method and an id. */
function isRequest(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(isRequest);
  return value !== null && typeof value === "object" && "method" in value && "id" in value;
}

/** The gateway's answer, as an SSE event, to a request whose upstream answer will never come. */
function unanswered(id: JsonRpcId, denial: FailureDenial = { kind: "upstream_malformed" }): string {
  return formatSseEvent(renderRpcError(id, denial), MESSAGE_EVENT);
}

function mapEvent(
  plan: ResponsePlan,
  ev: { raw: string; data?: string; id?: string; event?: string },
  ids: WireIds,
  seen: { serverRequest: boolean },
): string {
  if (ev.data === undefined) return ev.raw;
  // A dropped message keeps its event id (so resumption still counts it) but carries nothing.
  const dropped = ev.id !== undefined ? `id: ${ev.id}\n\n` : "";
  let value: unknown;
  try {
    value = JSON.parse(ev.data);
  } catch {
    // Data we cannot read cannot be mapped or filtered, and a laxer parser on the client might read
    // it as an answer (a JSON body in this state is refused too): it is not relayed.
    return dropped;
  }
  if (!seen.serverRequest && isRequest(value)) seen.serverRequest = true;
  const { value: mapped, changed } = ids.inboundValue(value, plan.visible, plan.era);
  if (!changed) return ev.raw;
  if (mapped === undefined || (Array.isArray(mapped) && mapped.length === 0)) return dropped;
  return formatSseEvent(JSON.stringify(mapped), ev);
}

/** Most characters of mapped events held for the end of the event loop's turn. */
const HOLD_MAX = 64 * 1024;

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

/** The answer budget is spent: the caller's share (its unread answers), or the gateway's total. */
class BudgetSpent extends Error {
  constructor(readonly scope: "caller" | "full") {
    super("answer budget spent");
  }
}

/**
 * The denial for a spent answer budget while the answer is read: the call has run, so its answer
 * is dropped (-31012, not to be retried blindly) — a caller with no room for one more answer was
 * refused before forwarding (429, `ResponseOwner.roomForAnswer`).
 */
function budgetDenial(scope: "caller" | "full"): FailureDenial {
  return scope === "caller"
    ? { kind: "client_too_slow" }
    : { kind: "capacity", message: "too many unread answers", ran: true };
}

async function readBounded(body: Readable, h: RelayHost, idleMs: number): Promise<string> {
  const limit = h.maxResponseBytes;
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
      const held = h.hold(chunk.length);
      if (held !== "ok") throw new BudgetSpent(held);
      chunks.push(chunk);
    }
  } finally {
    clearTimeout(idle);
  }
  return Buffer.concat(chunks).toString("utf8");
}
