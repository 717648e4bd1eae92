import { context, propagation, SpanKind, trace } from "@opentelemetry/api";
import { spanUrl } from "./span-url.js";
import { markSpanFailed, TRACE_ATTR, tracer } from "./tracing.js";

/**
 * The upstream call as a CLIENT span, and the W3C trace context the upstream receives: the
 * `traceparent` header for HTTP upstreams, `params._meta.traceparent` for stdio ones
 * (docs/tracing.md). Depends on `@opentelemetry/api` only; a no-op without an SDK.
 */

/** The upstream call as the forwarding code describes it. */
export interface UpstreamSpanStart {
  /** The upstream's name (`upstreams[].name`, or `default`). */
  upstream: string;
  transport: "http" | "stdio";
  /** HTTP upstreams: the URL (userinfo and query are never recorded). */
  url?: string | undefined;
  mcpMethod?: string | undefined;
  tool?: string | undefined;
}

/** One upstream call. */
export interface UpstreamTrace {
  /** Run `fn` with the CLIENT span active. */
  run<T>(fn: () => T): T;
  /** Add `traceparent` (and `tracestate`) for this call to outgoing HTTP headers. */
  inject(headers: Record<string, string>): void;
  /** The W3C fields for `params._meta` (stdio upstreams): empty without a valid span context. */
  metaFields(): { traceparent?: string; tracestate?: string };
  /** End the span with the upstream's HTTP status (or a failure kind such as `upstream_timeout`). */
  end(result: { status?: number | undefined; error?: string | undefined }): void;
}

const NOOP_UPSTREAM: UpstreamTrace = Object.freeze({
  run: <T>(fn: () => T): T => fn(),
  inject: () => {},
  metaFields: () => ({}),
  end: () => {},
});

/**
 * Start the CLIENT span of one upstream call, child of the active (request) span. Its context is
 * what the upstream receives: `traceparent` headers for HTTP upstreams, `params._meta.traceparent`
 * for stdio ones (MCP carries W3C trace context in `_meta` where there are no headers).
 * Without an SDK this returns a shared no-op.
 *
 * @example
 * const up = startUpstreamSpan({ upstream: "notes", transport: "http", url });
 * up.inject(headers);
 * const res = await up.run(() => request(url, { headers }));
 * up.end({ status: res.statusCode });
 */
export function startUpstreamSpan(start: UpstreamSpanStart): UpstreamTrace {
  const parentCtx = context.active();
  const parent = trace.getSpan(parentCtx);
  if (!parent || !trace.isSpanContextValid(parent.spanContext())) return NOOP_UPSTREAM;
  const name = start.mcpMethod
    ? `${start.mcpMethod}${start.tool ? ` ${start.tool}` : ""} → ${start.upstream}`
    : `${start.transport} → ${start.upstream}`;
  const span = tracer().startSpan(name, { kind: SpanKind.CLIENT }, parentCtx);
  const ctx = trace.setSpan(parentCtx, span);
  if (span.isRecording()) {
    span.setAttribute(TRACE_ATTR.upstream, start.upstream);
    span.setAttribute(TRACE_ATTR.networkTransport, start.transport === "stdio" ? "pipe" : "tcp");
    if (start.mcpMethod) span.setAttribute(TRACE_ATTR.mcpMethod, start.mcpMethod);
    if (start.tool) span.setAttribute(TRACE_ATTR.toolName, start.tool);
    const url = start.url ? spanUrl(start.url) : undefined;
    if (url) {
      span.setAttribute(TRACE_ATTR.urlFull, url.full);
      span.setAttribute(TRACE_ATTR.serverAddress, url.host);
      if (url.port) span.setAttribute(TRACE_ATTR.serverPort, url.port);
    }
  }
  let ended = false;
  return {
    run: (fn) => context.with(ctx, fn),
    inject(headers) {
      propagation.inject(ctx, headers);
    },
    metaFields: () => context.with(ctx, activeTraceMeta),
    end(result) {
      if (ended) return;
      ended = true;
      if (span.isRecording()) {
        if (result.status !== undefined) span.setAttribute(TRACE_ATTR.httpStatus, result.status);
        if (result.error) markSpanFailed(span, result.error);
        else if (result.status !== undefined && result.status >= 400)
          markSpanFailed(span, String(result.status));
      }
      span.end();
    },
  };
}

/**
 * Set `params._meta.traceparent` (and `tracestate`) on a JSON-RPC request or notification bound
 * for a stdio upstream. A value the client put there is replaced: the upstream's parent is the
 * gateway's CLIENT span, as a W3C intermediary does with the `traceparent` header. Returns the
 * message unchanged when there is nothing to add; never mutates its argument.
 *
 * @example const out = withTraceMeta(message, up.metaFields());
 */
export function withTraceMeta<M extends { method?: unknown; params?: unknown }>(
  message: M,
  fields: { traceparent?: string; tracestate?: string },
): M {
  if (!fields.traceparent || typeof message.method !== "string") return message;
  const params =
    message.params && typeof message.params === "object" && !Array.isArray(message.params)
      ? (message.params as Record<string, unknown>)
      : message.params === undefined
        ? {}
        : undefined;
  // Positional params (an array) have no place for `_meta`: leave the message as it is.
  if (!params) return message;
  const meta =
    params._meta && typeof params._meta === "object" && !Array.isArray(params._meta)
      ? (params._meta as Record<string, unknown>)
      : {};
  const nextMeta: Record<string, unknown> = { ...meta, traceparent: fields.traceparent };
  if (fields.tracestate) nextMeta.tracestate = fields.tracestate;
  else delete nextMeta.tracestate;
  return { ...message, params: { ...params, _meta: nextMeta } };
}

/**
 * Add the active context's `traceparent` (and `tracestate`) to outgoing upstream headers: for code
 * that runs inside {@link UpstreamTrace.run}. Replaces a client's own values. No-op without an SDK.
 *
 * @example injectTraceHeaders(upstreamHeaders);
 */
export function injectTraceHeaders(headers: Record<string, string | string[] | undefined>): void {
  delete headers.traceparent;
  delete headers.tracestate;
  propagation.inject(context.active(), headers);
}

/**
 * The active context's W3C fields for `params._meta` (stdio upstreams), for code that runs inside
 * {@link UpstreamTrace.run}: pass them to {@link withTraceMeta}. Empty without an SDK.
 *
 * @example const fields = activeTraceMeta(); … write(withTraceMeta(message, fields));
 */
export function activeTraceMeta(): { traceparent?: string; tracestate?: string } {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return {
    ...(carrier.traceparent ? { traceparent: carrier.traceparent } : {}),
    ...(carrier.tracestate ? { tracestate: carrier.tracestate } : {}),
  };
}
