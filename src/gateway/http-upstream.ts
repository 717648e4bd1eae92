import type { IncomingHttpHeaders } from "node:http";
import { Agent, errors as undiciErrors } from "undici";
import { listRequestIds } from "../mcp/list-filter.js";
import {
  createSseRewriter,
  needsRewrite,
  type RewritePlan,
  rewriteJsonBody,
} from "../mcp/response-rewriter.js";
import type { ForwardContext, ForwardOutcome, Upstream } from "./upstream.js";

export interface HttpUpstreamOptions {
  url: string;
  /** The gateway's own upstream credential and other fixed headers (never the client's). */
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** Cap on a JSON response buffered for rewriting. */
  maxResponseBytes?: number;
  connections?: number;
}

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

/** Response headers never relayed back (hop-by-hop, RFC 9110 §7.6.1, plus framing we recompute). */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "proxy-authenticate",
  "content-length",
]);

function upstreamHeaders(
  incoming: IncomingHttpHeaders,
  fixed: Record<string, string>,
  era: "2025" | "2026",
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARD_HEADERS) {
    const v = incoming[name];
    if (typeof v === "string") out[name] = v;
  }
  for (const [name, v] of Object.entries(incoming)) {
    // 2026-07-28: unrecognised Mcp-Param-* headers MUST be forwarded.
    if (name.startsWith("mcp-param-") && typeof v === "string") out[name] = v;
  }
  // 2026-07-28 has no sessions (servers ignore Mcp-Session-Id), and the gate checks bindings only
  // for 2025-era requests: a 2026-era request must not carry a session id past the gate to a
  // dual-era upstream that would honour it.
  if (era === "2026") delete out["mcp-session-id"];
  for (const [name, v] of Object.entries(fixed)) out[name.toLowerCase()] = v;
  return out;
}

/**
 * Relay to an HTTP MCP server through a pooled keep-alive undici Agent. Responses stream through
 * without buffering, except JSON bodies that must be filtered per caller.
 *
 * @example const up = createHttpUpstream({ url: "http://127.0.0.1:3000/mcp", timeoutMs: 30_000 });
 */
export function createHttpUpstream(options: HttpUpstreamOptions): Upstream {
  const target = new URL(options.url);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const maxResponseBytes = options.maxResponseBytes ?? 32 * 1024 * 1024;
  const fixed = options.headers ?? {};
  const agent = new Agent({
    connections: options.connections ?? 128,
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs,
    connectTimeout: Math.min(timeoutMs, 10_000),
    pipelining: 1,
  });
  const path = `${target.pathname}${target.search}`;

  async function forward(ctx: ForwardContext): Promise<ForwardOutcome> {
    const { req, res, admission } = ctx;
    const started = performance.now();
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.on("close", onClose);
    const method = (req.method ?? "GET").toUpperCase();
    let upstream: Awaited<ReturnType<Agent["request"]>>;
    try {
      upstream = await agent.request({
        origin: target.origin,
        path,
        method: method as "GET" | "POST" | "DELETE",
        headers: upstreamHeaders(req.headers, fixed, admission.era),
        ...(method === "POST" ? { body: ctx.body ?? "" } : {}),
        signal: abort.signal,
        headersTimeout: timeoutMs,
        // SSE streams may idle for a long time; JSON bodies are bounded by the timeout.
        bodyTimeout: 0,
      });
    } catch (err) {
      res.off("close", onClose);
      const upstreamMs = performance.now() - started;
      if (abort.signal.aborted) return { status: 499, upstreamMs, result: "aborted" };
      const timeout =
        err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError;
      return { status: timeout ? 504 : 502, upstreamMs, result: timeout ? "timeout" : "unavailable" };
    }
    const upstreamMs = performance.now() - started;
    // Every path below either consumes the body (errors reach the iterator) or destroys it; a
    // destroyed body that nobody reads emits 'error', which unhandled would crash the process.
    upstream.body.on("error", () => {});
    const status = upstream.statusCode;
    const sessionHeader = upstream.headers["mcp-session-id"];
    const sessionId = typeof sessionHeader === "string" ? sessionHeader : undefined;
    try {
      await ctx.onHead(status, sessionId);
    } catch {
      res.off("close", onClose);
      upstream.body.destroy();
      return { status: 503, upstreamMs, result: "state_unavailable" };
    }

    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(upstream.headers)) {
      if (v !== undefined && !HOP_BY_HOP.has(k.toLowerCase())) headers[k] = v;
    }
    const contentType = String(upstream.headers["content-type"] ?? "").toLowerCase();
    const plan: RewritePlan = {
      // A GET stream may replay (Last-Event-ID) a list response: filter any response on it.
      listIds: listRequestIds(admission.messages, method === "GET" && admission.listFilter !== undefined),
      era: admission.era,
      localResponses: admission.localResponses,
      ...(admission.listFilter ? { visible: admission.listFilter } : {}),
    };
    // SSE streams may idle for as long as they like; any other body must keep arriving: no chunk
    // for `timeoutMs` and it is cut (an upstream that sends a head and stalls must not pin us).
    const sse = contentType.startsWith("text/event-stream");
    let idle: NodeJS.Timeout | undefined;
    let stalled = false;
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        stalled = true;
        upstream.body.destroy(new Error("upstream body stalled"));
      }, timeoutMs);
    };
    try {
      if (sse) {
        headers["x-accel-buffering"] = "no";
        res.writeHead(status, headers);
        // A standalone GET stream may stay silent for long: send its head at once. A POST's first
        // event normally follows immediately; its head then goes out in the same write (one syscall
        // less per call), and after 50 ms of silence on its own.
        let headTimer: NodeJS.Timeout | undefined;
        if (method === "GET") res.flushHeaders();
        else headTimer = setTimeout(() => res.flushHeaders(), 50);
        const rewriter = needsRewrite(plan) ? createSseRewriter(plan) : undefined;
        // Without a rewrite the bytes pass through untouched (no decode/encode per chunk).
        if (rewriter) upstream.body.setEncoding("utf8");
        try {
          for await (const chunk of upstream.body as AsyncIterable<string | Buffer>) {
            const out = rewriter ? rewriter.push(chunk) : chunk;
            if (out) {
              clearTimeout(headTimer);
              res.write(out);
            }
          }
        } finally {
          clearTimeout(headTimer);
        }
        if (rewriter) {
          const rest = rewriter.end();
          if (rest) res.write(rest);
        }
        res.end();
      } else if (needsRewrite(plan) && (contentType.startsWith("application/json") || status === 202)) {
        touch();
        const text = await readAll(upstream.body, maxResponseBytes, touch);
        const rewritten =
          text === ""
            ? { ok: true as const, body: JSON.stringify(plan.localResponses) }
            : rewriteJsonBody(text, plan);
        if (!rewritten.ok) {
          res.writeHead(502, { "content-type": "application/json" });
          res.end(
            JSON.stringify({
              jsonrpc: "2.0",
              id: null,
              error: { code: -31004, message: "Bad Gateway: malformed upstream response" },
            }),
          );
          return { status: 502, upstreamMs, result: "error" };
        }
        const outStatus = status === 202 ? 200 : status;
        headers["content-type"] = "application/json";
        res.writeHead(outStatus, headers);
        res.end(rewritten.body);
      } else if (plan.visible && plan.listIds.size > 0 && status >= 200 && status < 300) {
        // A success we cannot parse may carry an unfiltered list: never relay it (fail closed).
        upstream.body.destroy();
        res.writeHead(502, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            jsonrpc: "2.0",
            id: null,
            error: { code: -31004, message: "Bad Gateway: unexpected upstream content type" },
          }),
        );
        return { status: 502, upstreamMs, result: "error" };
      } else {
        res.writeHead(status, headers);
        touch();
        for await (const chunk of upstream.body) {
          touch();
          res.write(chunk);
        }
        res.end();
      }
      return { status, upstreamMs, result: "ok" };
    } catch {
      // Mid-stream failure (upstream died or stalled, client left).
      upstream.body.destroy();
      if (!res.headersSent) {
        if (stalled) return { status: 504, upstreamMs, result: "timeout" };
        res.writeHead(502, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            jsonrpc: "2.0",
            id: null,
            error: { code: -31004, message: "Bad Gateway: upstream failed" },
          }),
        );
      } else if (sse) {
        // SSE: end cleanly; a client discards the torn last event (WHATWG HTML §9.2.6).
        res.end();
      } else {
        // Anything else: a clean end would pass a truncated body off as complete. Cut it instead.
        res.destroy();
      }
      return { status, upstreamMs, result: abort.signal.aborted ? "aborted" : stalled ? "timeout" : "error" };
    } finally {
      clearTimeout(idle);
      res.off("close", onClose);
    }
  }

  return {
    forward,
    async close() {
      // In-flight streams were ended by the server already; never wait on a long-lived SSE stream.
      await agent.destroy();
    },
  };
}

async function readAll(body: AsyncIterable<Buffer>, limit: number, onChunk: () => void): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    onChunk();
    size += chunk.length;
    if (size > limit) throw new RangeError("upstream response too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
