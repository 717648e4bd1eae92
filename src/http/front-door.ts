import { randomUUID } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { HttpResponseSpec } from "../core/challenge.js";
import { isoNow } from "../core/clock.js";
import type { RequestSummary } from "../core/contracts.js";
import { displayOf, redactSessionId } from "../core/identity.js";
import type { Admission, Gate, ResponsePlan } from "../gate/gate.js";
import { type RequestTrace, startRequestSpan } from "../observe/tracing.js";
import { answerBeforeBody, gateHeaders, readBody } from "./body.js";
import { createResponseOwner, type ResponseOwner, type ResponseOwnerOptions } from "./response-owner.js";

/**
 * The one front door of an MCP endpoint (issue 13), shared by the gateway, the `node:http`
 * adapter and the Express middleware. Its flow, in order, in {@link handleMcpRequest}:
 *
 *   authenticate on the headers → read the body (bounded; `100 Continue` only now) → admit
 *   → forward or answer (one response owner) → finish (request log, metrics, 401 spikes)
 *
 * A caller without an acceptable credential never gets a body byte kept, nor a `100 Continue`.
 */

/** What an admitted request hands to whatever answers it (an upstream, an in-process server). */
export interface Entry {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly admission: Admission;
  readonly plan: ResponsePlan;
  readonly owner: ResponseOwner;
}

/** How the forwarding went, for the request log and metrics. */
export interface ForwardResult {
  /** "ok" or the failure class ("unavailable", "timeout", "aborted", "error", "refused"…). */
  result: string;
  /** Time to the upstream's head, in ms. */
  upstreamMs?: number;
}

/** Where admitted requests of one endpoint go. */
export interface McpRoute {
  gate: Gate;
  /** Name of the mount (upstream) in logs and metrics, when the gateway serves several. */
  name?: string;
  /** Answer an admitted request whose plan says `forward`. Must never throw after writing. */
  forward(entry: Entry): Promise<ForwardResult>;
  /** Options for the response owner (bounds, lifetime events). */
  owner?: Pick<ResponseOwnerOptions, "maxResponseBytes" | "slowClientMs" | "onEvent" | "answerBudget">;
}

const awaitingContinue = new WeakSet<IncomingMessage>();

/**
 * Route `Expect: 100-continue` requests through the front door, so that `100 Continue` is sent only
 * once the credential is accepted (RFC 9110 §10.1.1: a server may answer with a final status
 * instead). Without this Node answers 100 itself before any handler runs.
 *
 * @example deferContinue(server); // then server.on("request", handler) as usual
 */
export function deferContinue(server: Server): void {
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => {
    awaitingContinue.add(req);
    server.emit("request", req, res);
  });
}

function send(res: ServerResponse, spec: HttpResponseSpec): void {
  if (res.headersSent) return;
  res.writeHead(spec.status, spec.headers).end(spec.body);
}

const round = (ms: number) => Math.round(ms * 100) / 100;

/** A forwarded request still unanswered after this long has its credential watched (revocation, expiry). */
const LIFETIME_CHECK_AFTER_MS = 500;

/**
 * Serve one request on an MCP endpoint.
 *
 * @example
 * http.createServer((req, res) => void handleMcpRequest(req, res, { gate, forward: (e) => upstream.forward(e) }));
 */
export async function handleMcpRequest(
  req: IncomingMessage,
  res: ServerResponse,
  route: McpRoute,
): Promise<void> {
  // Tracing (docs/tracing.md): the request's span, continuing an incoming `traceparent`; everything
  // below runs inside it (child spans, the request log line's trace_id). A no-op without an SDK.
  const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? "/";
  const span = startRequestSpan({
    method: req.method ?? "GET",
    path: (url.split("?")[0] ?? "/").slice(0, 256),
    headers: req.headers,
    remoteAddress: req.socket.remoteAddress,
    upstream: route.name,
  });
  return span.run(() => serveMcpRequest(req, res, route, span));
}

async function serveMcpRequest(
  req: IncomingMessage,
  res: ServerResponse,
  route: McpRoute,
  span: RequestTrace,
): Promise<void> {
  const { gate } = route;
  const started = performance.now();
  const header = res.getHeader("x-request-id");
  const requestId = typeof header === "string" ? header : randomUUID();
  const method = (req.method ?? "GET").toUpperCase();
  const summary: RequestSummary = {
    requestId,
    httpMethod: method,
    status: 0,
    decision: "allow",
    latencyMs: 0,
  };
  if (route.name !== undefined) summary.mount = route.name;
  const finish = (status: number, decision: string) => {
    summary.status = status;
    summary.decision = decision;
    summary.latencyMs = round(performance.now() - started);
    if (span.traceId !== undefined) {
      const minted = res.getHeader("mcp-session-id");
      const version = headers["mcp-protocol-version"];
      span.describe({
        requestId,
        mcpMethod: summary.rpcMethod,
        tool: summary.tool,
        era: summary.era,
        principal: summary.principal,
        sessionId: sessionId ?? (typeof minted === "string" ? minted : undefined),
        // From the request, before it is known valid: bounded like any other span attribute we set.
        protocolVersion: typeof version === "string" ? version.slice(0, 32) : undefined,
      });
    }
    gate.options.observer?.request?.(summary);
    span.end({ status, decision });
  };
  let sessionId: string | undefined;

  // 1. Authenticate on the headers alone: no body byte is kept, no 100 sent, before this says yes.
  const headers = gateHeaders(req);
  const authn = await gate.authenticate({
    method,
    headers,
    remoteAddress: req.socket.remoteAddress,
    requestId,
  });
  if (!authn.ok) {
    answerBeforeBody(req, res, authn.response);
    return finish(authn.response.status, authn.denial.kind);
  }
  summary.principal = displayOf(authn.auth.identity);

  // 2. The body, bounded (a body some earlier middleware parsed, e.g. express.json(), is used as is).
  const limit = gate.options.maxBodyBytes!;
  const preParsed = (req as { body?: unknown }).body;
  let bodyText: string | undefined;
  if (method === "POST" && preParsed === undefined) {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      const spec = gate.render({ kind: "body_too_large", limitBytes: limit });
      answerBeforeBody(req, res, spec);
      return finish(spec.status, "body_too_large");
    }
    if (awaitingContinue.has(req)) res.writeContinue();
    const body = await readBody(req, limit);
    if (!body.ok) {
      const spec = gate.render(
        body.tooLarge ? { kind: "body_too_large", limitBytes: limit } : { kind: "parse_error" },
      );
      answerBeforeBody(req, res, spec);
      return finish(spec.status, body.tooLarge ? "body_too_large" : "read_error");
    }
    bodyText = body.text;
  }

  // 3. Admit: parse, era, session, authorize, rate limit.
  const decision = await gate.admitAuthenticated(authn.auth, {
    method,
    headers,
    requestId,
    ...(bodyText !== undefined ? { bodyText } : method === "POST" ? { parsedBody: preParsed } : {}),
  });
  const a = decision.admission;
  if (a) {
    summary.era = a.era;
    sessionId = a.sessionId;
    const first = a.messages[0];
    if (first?.method !== undefined) summary.rpcMethod = first.method;
    const tool = a.messages.find((m) => m.method === "tools/call")?.name;
    if (tool !== undefined) summary.tool = tool;
  }
  if (!decision.ok) {
    send(res, decision.response);
    return finish(decision.response.status, decision.denial.kind);
  }

  // 4. Forward or answer: from here on the response owner alone writes the response.
  const { admission, plan } = decision;
  const onEvent = route.owner?.onEvent;
  const owner = createResponseOwner({
    req,
    res,
    gate,
    admission,
    plan,
    ...route.owner,
    onEvent(event) {
      // Audited for library users and the gateway alike: an upstream refusing the gateway's
      // credential (the operator's problem to see, at warn), a session refused as another
      // identity's (a stdio child told the identity that opened it), and a stream or long request
      // the gateway ended while it lasted — its credential ended (revoked, expired), or its client
      // left answers unread too long.
      const ended = event === "lifetime_ended" || event === "client_too_slow";
      if (event === "upstream_credentials" || event === "session_mismatch" || ended) {
        gate.options.observer?.audit?.({
          type: ended ? "stream_ended" : event,
          time: isoNow(),
          actor: summary.principal,
          requestId,
          ip: admission.ip,
          ...(ended ? { reason: event === "lifetime_ended" ? "credential_ended" : "client_too_slow" } : {}),
          ...(admission.sessionId !== undefined ? { sessionId: redactSessionId(admission.sessionId) } : {}),
          ...(route.name !== undefined ? { detail: { mount: route.name } } : {}),
        });
      }
      onEvent?.(event);
    },
  });
  if (plan.answer !== "forward") {
    owner.answerLocally();
    return finish(owner.status, plan.answer === "local" ? "denied" : "accepted");
  }
  const tools = plan.forward
    .filter((m) => m.method === "tools/call" && m.name !== undefined)
    .map((m) => m.name!);
  if (tools.length > 0) summary.forwardedTools = tools;
  // The credential is checked again while the upstream takes its time (issue 14 item 5): a long
  // request is ended at revocation or expiry, whatever form its answer will take.
  owner.armLifetimeAfter(LIFETIME_CHECK_AFTER_MS);
  const out = await route.forward({ req, res, admission, plan, owner });
  if (out.upstreamMs !== undefined) summary.upstreamMs = round(out.upstreamMs);

  // 5. Finish: one summary per request to the gate's observer (log line, metrics, spikes).
  finish(owner.status || res.statusCode, out.result === "ok" ? "allow" : `upstream_${out.result}`);
}
