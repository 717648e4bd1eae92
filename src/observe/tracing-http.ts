import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { context, type Span, SpanKind } from "@opentelemetry/api";
import { spanUrl } from "./span-url.js";
import { markSpanFailed, TRACE_ATTR, tracer } from "./tracing.js";
import { noteAuthLookup, wantsHttpChildSpans } from "./tracing-wrappers.js";

/**
 * CLIENT spans for the HTTP calls authentication makes (the JWKS fetch, token introspection,
 * issuer discovery): undici — which `fetchJson` uses, and which Node's own `fetch` (jose's JWKS
 * fetch) is built on — publishes every request on `node:diagnostics_channel`. A request started
 * inside an `mcpgate.authenticate` span (see tracing-wrappers.ts) gets a span named by its HTTP
 * method with `url.full` (no query, no userinfo), `server.address` and the response status; every
 * other request (the upstream call has its own span) is left alone. No header and no body is
 * recorded: an introspection request carries the token in its body and the client secret in its
 * `Authorization` header.
 */

interface UndiciRequest {
  origin?: unknown;
  method?: unknown;
  path?: unknown;
}

const CREATE = "undici:request:create";
const HEADERS = "undici:request:headers";
const ERROR = "undici:request:error";

/** Spans by request object: ended on response headers or error. */
const open = new WeakMap<object, Span>();

function onCreate(message: unknown): void {
  const request = (message as { request?: UndiciRequest }).request;
  if (!request || !wantsHttpChildSpans()) return;
  noteAuthLookup();
  const method = typeof request.method === "string" ? request.method : "GET";
  const attributes: Record<string, string | number> = { [TRACE_ATTR.httpMethod]: method };
  const path = typeof request.path === "string" ? request.path : "";
  // An origin that is not a URL: the span keeps the method only.
  const url = spanUrl(`${String(request.origin)}${path.startsWith("/") ? path : `/${path}`}`);
  if (url) {
    attributes[TRACE_ATTR.urlFull] = url.full;
    attributes[TRACE_ATTR.serverAddress] = url.host;
    if (url.port) attributes[TRACE_ATTR.serverPort] = url.port;
  }
  open.set(request, tracer().startSpan(method, { kind: SpanKind.CLIENT, attributes }, context.active()));
}

function onHeaders(message: unknown): void {
  const m = message as { request?: object; response?: { statusCode?: unknown } };
  const span = m.request ? open.get(m.request) : undefined;
  if (!span || !m.request) return;
  open.delete(m.request);
  const status = typeof m.response?.statusCode === "number" ? m.response.statusCode : undefined;
  if (status !== undefined) {
    span.setAttribute(TRACE_ATTR.httpStatus, status);
    if (status >= 400) markSpanFailed(span, String(status));
  }
  span.end();
}

function onError(message: unknown): void {
  const m = message as { request?: object; error?: { code?: unknown; name?: unknown } };
  const span = m.request ? open.get(m.request) : undefined;
  if (!span || !m.request) return;
  open.delete(m.request);
  const code = typeof m.error?.code === "string" ? m.error.code : undefined;
  const name = typeof m.error?.name === "string" ? m.error.name : undefined;
  markSpanFailed(span, code ?? name ?? "error");
  span.end();
}

let subscribers = 0;

/**
 * Start giving authentication's HTTP calls their own CLIENT spans. Returns the function that stops
 * it. The gateway calls this when tracing is on; a library user with an SDK may call it too.
 *
 * @example const stop = traceAuthHttpCalls(); … stop();
 */
export function traceAuthHttpCalls(): () => void {
  if (subscribers++ === 0) {
    subscribe(CREATE, onCreate);
    subscribe(HEADERS, onHeaders);
    subscribe(ERROR, onError);
  }
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    if (--subscribers === 0) {
      unsubscribe(CREATE, onCreate);
      unsubscribe(HEADERS, onHeaders);
      unsubscribe(ERROR, onError);
    }
  };
}
