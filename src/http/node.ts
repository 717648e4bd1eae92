import type { IncomingMessage, ServerResponse } from "node:http";
import { type HttpResponseSpec, JSONRPC } from "../core/challenge.js";
import { type SdkAuthInfo, toAuthInfo } from "../core/identity.js";
import { type Admission, createGate, type Gate, type GateOptions } from "../gate/gate.js";
import { gateHeaders, readBody } from "./body.js";
import { handleProtectedResourceMetadata } from "./protected-resource-metadata.js";

/** The request after the middleware: `auth` in the SDK's AuthInfo shape, `body` parsed. */
export type AuthenticatedRequest = IncomingMessage & {
  auth?: SdkAuthInfo;
  body?: unknown;
  mcpgate?: Admission;
};

/**
 * `(req, res) => Promise<boolean>`: true when the request may proceed (req.auth and req.body set),
 * false when the middleware has already answered it (401, 403, 404, 413, 429…).
 */
export type NodeMcpAuth = ((req: IncomingMessage, res: ServerResponse) => Promise<boolean>) & { gate: Gate };

function send(res: ServerResponse, spec: HttpResponseSpec): void {
  if (res.headersSent) return;
  res.writeHead(spec.status, spec.headers).end(spec.body);
}

/** Accept either a built gate or the options to build one. */
export function resolveGate(gateOrOptions: Gate | GateOptions): Gate {
  return "admit" in gateOrOptions ? gateOrOptions : createGate(gateOrOptions);
}

/**
 * Authentication for a plain `node:http` MCP server. Also answers the Protected Resource Metadata
 * paths (404 in API-key-only mode).
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
  const fn = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    if (handleProtectedResourceMetadata(gate, req, res)) return false;
    const r = req as AuthenticatedRequest;
    let bodyText: string | undefined;
    if (req.method === "POST" && r.body === undefined) {
      const body = await readBody(req, gate.options.maxBodyBytes!);
      if (!body.ok) {
        send(
          res,
          gate.render(
            body.tooLarge
              ? { kind: "body_too_large", limitBytes: gate.options.maxBodyBytes! }
              : { kind: "parse_error" },
          ),
        );
        return false;
      }
      bodyText = body.text;
    }
    const decision = await gate.admit({
      method: req.method ?? "GET",
      headers: gateHeaders(req),
      remoteAddress: req.socket.remoteAddress,
      ...(bodyText !== undefined ? { bodyText } : { parsedBody: r.body }),
    });
    if (!decision.ok) {
      send(res, decision.response);
      return false;
    }
    const a = decision.admission;
    if (a.localResponses.length > 0) {
      // A batch with elements the policy refused. The in-process server would run the whole body
      // (its response cannot be merged with ours here), so answer the batch entirely: the refused
      // elements with their denial, the others with an error asking to resend them alone.
      const rest = a.messages
        .filter((m) => m.type === "request")
        .map((m) => ({
          jsonrpc: "2.0",
          id: m.id ?? null,
          error: {
            code: JSONRPC.FORBIDDEN,
            message:
              "Forbidden: this batch contains a call the policy refuses; send the other calls without it",
          },
        }));
      send(res, {
        status: 200,
        headers: { "content-type": "application/json" },
        body: JSON.stringify([...a.localResponses, ...rest]),
      });
      return false;
    }
    if (bodyText !== undefined) r.body = a.body;
    r.auth = toAuthInfo(a.identity, a.token, resource);
    r.mcpgate = a;
    watchSessionHeader(gate, a, req, res);
    return true;
  };
  return Object.assign(fn, { gate });
}

/**
 * Bind the session the in-process SDK transport mints: capture `Mcp-Session-Id` as the response
 * head is written (before any byte reaches the client).
 */
function watchSessionHeader(
  gate: Gate,
  admission: Admission,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  if (!admission.initialize && !admission.sessionId) return;
  const original = res.writeHead.bind(res) as (...args: unknown[]) => ServerResponse;
  (res as unknown as { writeHead: (...args: unknown[]) => ServerResponse }).writeHead = (
    ...args: unknown[]
  ) => {
    const status = args[0] as number;
    const headerArg = args.find((a, i) => i > 0 && a && typeof a === "object") as
      | Record<string, unknown>
      | undefined;
    const fromArg = headerArg
      ? Object.entries(headerArg).find(([k]) => k.toLowerCase() === "mcp-session-id")?.[1]
      : undefined;
    const sessionId = (fromArg ?? res.getHeader("mcp-session-id")) as string | undefined;
    void gate
      .onResponse(admission, {
        status,
        method: req.method ?? "POST",
        ...(sessionId ? { sessionId: String(sessionId) } : {}),
      })
      .catch(() => {});
    return original(...args);
  };
}
