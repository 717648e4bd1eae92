import type { IncomingMessage, ServerResponse } from "node:http";
import type { Gate, GateOptions } from "../gate/gate.js";
import { createNodeMcpAuth } from "./node.js";

/** Express-compatible middleware signature (kept structural so Express is not a runtime dependency). */
export type ExpressMiddleware = ((
  req: IncomingMessage,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => void) & {
  gate: Gate;
};

/**
 * Express middleware: authenticates every request, answers refusals itself, and sets `req.auth`
 * (the SDK's AuthInfo, delivered to tool handlers as `extra.authInfo`) and `req.body`.
 * Mount it on the MCP route; it also serves the Protected Resource Metadata paths when mounted
 * at the app level.
 *
 * @example
 * app.use(mcpAuth({ verifiers: [createStaticKeyVerifier({ key })], publicUrl: "http://127.0.0.1:3000/mcp" }));
 */
export function mcpAuth(gateOrOptions: Gate | GateOptions): ExpressMiddleware {
  const auth = createNodeMcpAuth(gateOrOptions);
  const mw = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => {
    // `next` runs inside the request's trace context (onAdmitted), so the app's handler is part of it.
    auth(req, res, () => next()).then(undefined, next);
  };
  return Object.assign(mw, { gate: auth.gate });
}
