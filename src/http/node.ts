import type { IncomingMessage, ServerResponse } from "node:http";
import { type SdkAuthInfo, toAuthInfo } from "../core/identity.js";
import { type Admission, createGate, type Gate, type GateOptions, type ResponsePlan } from "../gate/gate.js";
import { type Entry, handleMcpRequest } from "./front-door.js";
import { handleProtectedResourceMetadata } from "./protected-resource-metadata.js";

export { deferContinue } from "./front-door.js";

/** The request after the middleware: `auth` in the SDK's AuthInfo shape, `body` parsed. */
export type AuthenticatedRequest = IncomingMessage & {
  auth?: SdkAuthInfo;
  body?: unknown;
  mcpgate?: Admission;
  mcpgatePlan?: ResponsePlan;
};

/**
 * `(req, res) => Promise<boolean>`: true when the request may proceed (req.auth and req.body set),
 * false when the middleware has already answered it (401, 403, 404, 413, 429…).
 */
/**
 * Authenticate one request; true when the app should handle it. `onAdmitted`, when given, is called
 * for an admitted request inside the request's trace context (docs/tracing.md), so the app's
 * handler — and the spans it makes — belong to mcpgate's request span.
 */
export type NodeMcpAuth = ((
  req: IncomingMessage,
  res: ServerResponse,
  onAdmitted?: () => void,
) => Promise<boolean>) & { gate: Gate };

/** Accept either a built gate or the options to build one. */
export function resolveGate(gateOrOptions: Gate | GateOptions): Gate {
  return "admit" in gateOrOptions ? gateOrOptions : createGate(gateOrOptions);
}

/**
 * Authentication for a plain `node:http` MCP server, through the same front door as the gateway
 * (http/front-door.ts): credential before body, one observer for logs, metrics and 401 spikes
 * (`createGate({ observer })`). Also answers the Protected Resource Metadata paths (404 in
 * API-key-only mode). Call `deferContinue(server)` so that `Expect: 100-continue` is answered
 * only once the credential is accepted.
 *
 * @example
 * const auth = createNodeMcpAuth({ verifiers: [createStaticKeyVerifier({ key })], publicUrl });
 * http.createServer(async (req, res) => {
 *   if (!(await auth(req, res))) return;
 *   await transport.handleRequest(req, res, (req as AuthenticatedRequest).body);
 * });
 */
export function createNodeMcpAuth(gateOrOptions: Gate | GateOptions): NodeMcpAuth {
  const gate = resolveGate(gateOrOptions);
  const resource = new URL(gate.options.publicUrl);
  const fn = (req: IncomingMessage, res: ServerResponse, onAdmitted?: () => void): Promise<boolean> => {
    if (handleProtectedResourceMetadata(gate, req, res)) return Promise.resolve(false);
    return new Promise<boolean>((resolve, reject) => {
      // The in-process server is the "upstream": it gets the request when the front door forwards,
      // and the request is finished (logged, counted) when its response closes.
      const forward = (entry: Entry) => {
        handOver(resource, entry);
        onAdmitted?.();
        resolve(true);
        return new Promise<{ result: string }>((done) =>
          res.once("close", () => done({ result: res.writableFinished ? "ok" : "aborted" })),
        );
      };
      handleMcpRequest(req, res, { gate, forward }).then(() => resolve(false), reject);
    });
  };
  return Object.assign(fn, { gate });
}

/**
 * Give an admitted request to the in-process SDK server: `req.auth`, `req.body`, the session
 * binding on the response head, and the gate's own answers merged into its response.
 */
function handOver(resource: URL, entry: Entry): void {
  const { req, res, admission: a, plan, owner } = entry;
  const r = req as AuthenticatedRequest;
  // The app's server gets the allowed messages only; the refused batch elements are answered by
  // the gate, merged into the server's response (the gateway's batch semantics, docs/design.md §9).
  if (plan.localResponses.length > 0) {
    r.body = plan.forward.map((m) => m.raw);
    owner.mergeLocalAnswers();
  } else if (a.body !== undefined) r.body = a.body;
  r.auth = toAuthInfo(a.identity, a.token, resource);
  r.mcpgate = a;
  r.mcpgatePlan = plan;
  // The in-process transport writes the head itself: the owner binds the session it mints there.
  if (a.initialize || a.sessionId) bindOnHead(res, (status, sessionId) => void owner.bind(status, sessionId));
  // Its streams (GET SSE, long POSTs) end when the caller's credential expires or is revoked.
  owner.armLifetime();
}

/**
 * Call `onHead` with the status and `Mcp-Session-Id` as the response head is written (before any
 * byte reaches the client): how a session minted by an in-process SDK transport gets bound.
 */
function bindOnHead(
  res: ServerResponse,
  onHead: (status: number, sessionId: string | undefined) => void,
): void {
  const original = res.writeHead.bind(res) as (...args: unknown[]) => ServerResponse;
  (res as unknown as { writeHead: (...args: unknown[]) => ServerResponse }).writeHead = (
    ...args: unknown[]
  ) => {
    const status = args[0] as number;
    const headerArg = args.find((x, i) => i > 0 && x && typeof x === "object") as
      | Record<string, unknown>
      | undefined;
    const fromArg = headerArg
      ? Object.entries(headerArg).find(([k]) => k.toLowerCase() === "mcp-session-id")?.[1]
      : undefined;
    const sessionId = (fromArg ?? res.getHeader("mcp-session-id")) as string | undefined;
    onHead(status, sessionId ? String(sessionId) : undefined);
    return original(...args);
  };
}
