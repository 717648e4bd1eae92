import {
  type Attributes,
  type Context,
  context,
  ProxyTracerProvider,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  type TracerProvider,
  trace,
} from "@opentelemetry/api";
import { redactSessionId } from "../core/identity.js";

/**
 * OpenTelemetry traces for the gate, the library adapters and the gateway (docs/tracing.md).
 *
 * This file depends on `@opentelemetry/api` only. Without an SDK registered (the library's default,
 * and the gateway's when no `tracing:` / `OTEL_*` is configured) every call below is the API's no-op:
 * no span is allocated, no context is switched, nothing is extracted or injected. A process that
 * registers an SDK (the gateway's `src/gateway/tracing-sdk.ts`, or a library user's own
 * `NodeSDK`) gets a SERVER span per request with the HTTP and MCP semantic conventions, and children
 * for authentication, the state store and the upstream call.
 *
 * What a span never holds: a credential, a token, a key secret, an assertion, a full session id
 * (the first 8 characters only, as in the logs), a query string. Attribute values are set here
 * from typed fields, never from raw headers (docs/tracing.md "What a span never holds").
 */

let cachedTracer: { provider: TracerProvider; tracer: Tracer } | undefined;

/**
 * mcpgate's tracer, kept per global provider: a tracer kept from an earlier provider would outlive a
 * gateway's shutdown (`trace.disable()` installs a new provider) and keep feeding the old one.
 *
 * @example tracer().startSpan("mcpgate.something");
 */
export function tracer(): Tracer {
  const provider = trace.getTracerProvider();
  if (cachedTracer?.provider !== provider) cachedTracer = { provider, tracer: provider.getTracer("mcpgate") };
  return cachedTracer.tracer;
}

/**
 * Attribute names. HTTP ones follow the stable HTTP semantic conventions; MCP ones the MCP semantic
 * conventions (`mcp.*`, `gen_ai.tool.name`, `jsonrpc.request.id`); `mcpgate.*` are ours.
 */
export const TRACE_ATTR = Object.freeze({
  httpMethod: "http.request.method",
  httpStatus: "http.response.status_code",
  urlPath: "url.path",
  urlScheme: "url.scheme",
  urlFull: "url.full",
  serverAddress: "server.address",
  serverPort: "server.port",
  clientAddress: "client.address",
  errorType: "error.type",
  networkTransport: "network.transport",
  mcpMethod: "mcp.method.name",
  mcpSession: "mcp.session.id",
  mcpProtocolVersion: "mcp.protocol.version",
  toolName: "gen_ai.tool.name",
  resourceUri: "mcp.resource.uri",
  jsonrpcId: "jsonrpc.request.id",
  decision: "mcpgate.decision",
  upstream: "mcpgate.upstream",
  principal: "mcpgate.principal",
  era: "mcpgate.era",
  batchSize: "mcpgate.batch.size",
  requestId: "mcpgate.request_id",
  verifier: "mcpgate.auth.verifier",
  cacheHit: "mcpgate.auth.cache_hit",
  authResult: "mcpgate.auth.result",
  store: "mcpgate.store",
  storeOp: "mcpgate.store.operation",
  sessionChecked: "mcpgate.state.session_checked",
  sessionStatus: "mcpgate.state.session_status",
  buckets: "mcpgate.state.buckets",
  rateLimited: "mcpgate.state.rate_limited",
});

/** Header-shaped carriers as the gate sees them (lower-case names). */
export type HeaderCarrier = Record<string, string | string[] | undefined>;

/** The API's own no-op provider (what a provider-less proxy delegates to). */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * True when no SDK is registered: the global provider is the API's proxy with nothing behind it.
 * Checked per request (cheap), so an SDK registered later is picked up.
 */
export function tracingDisabled(): boolean {
  const provider = trace.getTracerProvider();
  return provider instanceof ProxyTracerProvider && provider.getDelegate() === NOOP_PROVIDER;
}

/** The active span, when it records (an SDK is registered and the trace is sampled). */
export function recordingParent(): Span | undefined {
  const span = trace.getActiveSpan();
  return span?.isRecording() ? span : undefined;
}

/**
 * The trace id of the active span, when there is a valid one: for log lines and audit events, so a
 * line leads to its trace. Undefined without an SDK.
 *
 * @example logger.info({ trace_id: activeTraceId() }, "request");
 */
export function activeTraceId(): string | undefined {
  const ctx = trace.getActiveSpan()?.spanContext();
  return ctx && trace.isSpanContextValid(ctx) ? ctx.traceId : undefined;
}

/**
 * pino `mixin`: `trace_id` and `span_id` on every line written while a request's span is active.
 *
 * @example pino({ mixin: traceLogFields });
 */
export function traceLogFields(): { trace_id?: string; span_id?: string } {
  const ctx = trace.getActiveSpan()?.spanContext();
  if (!ctx || !trace.isSpanContextValid(ctx)) return {};
  return { trace_id: ctx.traceId, span_id: ctx.spanId };
}

/** Mark a span failed: error status and `error.type`, no message beyond that stable code. */
export function markSpanFailed(span: Span, errorType: string): void {
  span.setAttribute(TRACE_ATTR.errorType, errorType);
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorType });
}

/**
 * A thrown error reduced to what a span may carry: its stable code or class name. Messages are
 * never recorded (a driver's message can hold a connection string with a password).
 */
function errorTypeOf(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown } | undefined;
  if (typeof e?.code === "string" && /^[A-Za-z0-9_.-]{1,64}$/.test(e.code)) return e.code;
  if (typeof e?.name === "string" && /^[A-Za-z0-9_.-]{1,64}$/.test(e.name)) return e.name;
  return "error";
}

/**
 * Run `fn` in a child span of the active span. Without a recording parent (no SDK, or an unsampled
 * trace) `fn` runs as it is: no span, no context switch. A throw ends the span with error status
 * (its code only) and is rethrown.
 *
 * @example await withChildSpan("mcpgate.state.admit", { "mcpgate.store": "redis" }, (span) => store.admit(x));
 */
export async function withChildSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span | undefined) => Promise<T>,
  kind: SpanKind = SpanKind.INTERNAL,
  extraContext?: (ctx: Context) => Context,
): Promise<T> {
  if (!recordingParent()) return fn(undefined);
  const span = tracer().startSpan(name, { kind, attributes });
  let ctx = trace.setSpan(context.active(), span);
  if (extraContext) ctx = extraContext(ctx);
  try {
    return await context.with(ctx, () => fn(span));
  } catch (err) {
    markSpanFailed(span, errorTypeOf(err));
    throw err;
  } finally {
    span.end();
  }
}

// ---------------------------------------------------------------------------------------------
// The request span (SERVER, or INTERNAL under an HTTP instrumentation's SERVER span)
// ---------------------------------------------------------------------------------------------

/** What the front door knows when a request arrives (before authentication). */
export interface RequestSpanStart {
  method: string;
  /** Path without the query string. */
  path: string;
  headers: HeaderCarrier;
  remoteAddress?: string | undefined;
  scheme?: "http" | "https" | undefined;
  /** The gateway's upstream name (several upstreams, DESIGN.md §9). */
  upstream?: string | undefined;
}

/** What the gate learned about the request (after authentication and parsing). */
export interface RequestSpanDetails {
  mcpMethod?: string | undefined;
  tool?: string | undefined;
  /** A resource URI (resources/read). */
  resourceUri?: string | undefined;
  /** The full session id: only its first 8 characters reach the span. */
  sessionId?: string | undefined;
  protocolVersion?: string | undefined;
  era?: string | undefined;
  /** Display prefix of the caller (`mcpg_<id>`, `static:<fp>`, `oauth:<iss>#<sub>`): never a credential. */
  principal?: string | undefined;
  jsonrpcId?: string | number | null | undefined;
  batchSize?: number | undefined;
  requestId?: string | undefined;
  upstream?: string | undefined;
}

/** How the request ended. */
export interface RequestSpanEnd {
  status: number;
  /** `allow`, or why not (the request log's `decision`). */
  decision: string;
}

/** One request's span and context. */
export interface RequestTrace {
  /** The context to run the rest of the request in (its span is the parent of every child). */
  readonly context: Context;
  /** The trace id, when the span context is valid (for the request log line and audit events). */
  readonly traceId: string | undefined;
  /** Run `fn` with this request's span active. */
  run<T>(fn: () => T): T;
  /** Add what the gate learned (MCP method, tool, short session id, principal, upstream). */
  describe(details: RequestSpanDetails): void;
  /** End the span: refusals (any decision but `allow`, or a status ≥ 400) get error status. */
  end(result: RequestSpanEnd): void;
}

const NOOP_TRACE: RequestTrace = Object.freeze({
  context: ROOT_CONTEXT,
  traceId: undefined,
  run: <T>(fn: () => T): T => fn(),
  describe: () => {},
  end: () => {},
});

/** Refusals: any decision other than these is an error for the span (issue: refusals are errors). */
const ALLOWED_DECISIONS = new Set(["allow", "allowed", "ok"]);

/**
 * Start the span of one MCP HTTP request. An incoming W3C `traceparent` is continued (through the
 * registered propagator). When a span is already active (an HTTP server instrumentation in a
 * library user's app), the request span is an INTERNAL child of it instead of a second SERVER span.
 * Without an SDK this returns a shared no-op.
 *
 * @example
 * const t = startRequestSpan({ method: req.method, path: "/mcp", headers: req.headers });
 * await t.run(() => handle(req, res));
 * t.end({ status: res.statusCode, decision: "allow" });
 */
export function startRequestSpan(start: RequestSpanStart): RequestTrace {
  if (tracingDisabled()) return NOOP_TRACE;
  const active = trace.getActiveSpan();
  const parent = active ? context.active() : propagation.extract(context.active(), start.headers);
  const method = start.method.toUpperCase();
  const span = tracer().startSpan(
    `${method} ${start.path}`,
    { kind: active ? SpanKind.INTERNAL : SpanKind.SERVER },
    parent,
  );
  const spanContext = span.spanContext();
  if (!span.isRecording() && !trace.isSpanContextValid(spanContext)) return NOOP_TRACE;
  const ctx = trace.setSpan(parent, span);
  if (span.isRecording()) {
    span.setAttribute(TRACE_ATTR.httpMethod, method);
    span.setAttribute(TRACE_ATTR.urlPath, start.path);
    span.setAttribute(TRACE_ATTR.urlScheme, start.scheme ?? "http");
    span.setAttribute(TRACE_ATTR.networkTransport, "tcp");
    if (start.remoteAddress) span.setAttribute(TRACE_ATTR.clientAddress, start.remoteAddress);
    if (start.upstream) span.setAttribute(TRACE_ATTR.upstream, start.upstream);
  }
  let ended = false;
  return {
    context: ctx,
    traceId: trace.isSpanContextValid(spanContext) ? spanContext.traceId : undefined,
    run: (fn) => context.with(ctx, fn),
    describe(d) {
      if (!span.isRecording()) return;
      const attrs: Attributes = {};
      if (d.mcpMethod) attrs[TRACE_ATTR.mcpMethod] = d.mcpMethod;
      if (d.tool) attrs[TRACE_ATTR.toolName] = d.tool;
      if (d.resourceUri) attrs[TRACE_ATTR.resourceUri] = d.resourceUri;
      if (d.sessionId) attrs[TRACE_ATTR.mcpSession] = redactSessionId(d.sessionId);
      if (d.protocolVersion) attrs[TRACE_ATTR.mcpProtocolVersion] = d.protocolVersion;
      if (d.era) attrs[TRACE_ATTR.era] = d.era;
      if (d.principal) attrs[TRACE_ATTR.principal] = d.principal;
      if (d.jsonrpcId !== undefined && d.jsonrpcId !== null)
        attrs[TRACE_ATTR.jsonrpcId] = String(d.jsonrpcId);
      if (d.batchSize !== undefined) attrs[TRACE_ATTR.batchSize] = d.batchSize;
      if (d.requestId) attrs[TRACE_ATTR.requestId] = d.requestId;
      if (d.upstream) attrs[TRACE_ATTR.upstream] = d.upstream;
      span.setAttributes(attrs);
      // MCP semantic conventions: "{mcp.method.name} {target}", the target being the tool (or
      // resource) when there is one.
      if (d.mcpMethod) span.updateName(d.tool ? `${d.mcpMethod} ${d.tool}` : d.mcpMethod);
    },
    end(result) {
      if (ended) return;
      ended = true;
      if (span.isRecording()) {
        span.setAttribute(TRACE_ATTR.httpStatus, result.status);
        span.setAttribute(TRACE_ATTR.decision, result.decision);
        if (result.status >= 400 || !ALLOWED_DECISIONS.has(result.decision)) {
          markSpanFailed(span, result.status >= 400 ? String(result.status) : result.decision);
        }
      }
      span.end();
    },
  };
}
