import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { HttpResponseSpec } from "../core/challenge.js";
import { McpGateError } from "../core/errors.js";
import type { Gate } from "../gate/gate.js";
import { deferContinue, type Entry, type ForwardResult, handleMcpRequest } from "../http/front-door.js";
import { handleProtectedResourceMetadata } from "../http/protected-resource-metadata.js";
import type { ResponseOwnerOptions } from "../http/response-owner.js";
import type { Logger } from "../observe/logger.js";
import type { ForwardContext, Upstream, UpstreamIdentity } from "./upstream.js";

/**
 * One MCP endpoint of the gateway: a path, the gate that admits its requests, and the upstream they
 * go to. Sessions are per mount (the gate's `sessionScope`): one minted behind a mount is unknown on
 * another.
 */
export interface Mount {
  /** `[a-z0-9-]+`, unique; in logs, metrics and audit. */
  name: string;
  /** The MCP endpoint path on the gateway, e.g. "/mcp" or "/notes/mcp". */
  path: string;
  gate: Gate;
  upstream: Upstream;
  /**
   * Upstream identity hook: called after admission and before forwarding. Its headers go on the
   * upstream HTTP request, its env to a stdio child at spawn; a failure is answered 502 (JSON-RPC
   * -31008) and nothing is forwarded. Its `expiresAt` ends open streams.
   */
  identity?: (entry: Entry) => Promise<UpstreamIdentity>;
  /**
   * Runs around every forward (tracing: start a CLIENT span, add `traceparent` to `ctx.headers` and
   * `ctx.meta`, end the span when `next` settles). Default: `next(ctx)`.
   */
  aroundForward?: (
    ctx: ForwardContext,
    next: (ctx: ForwardContext) => Promise<ForwardResult>,
  ) => Promise<ForwardResult>;
  /** Response owner options (bounds, events) for this mount. */
  owner?: Pick<ResponseOwnerOptions, "maxResponseBytes" | "slowClientMs" | "onEvent" | "answerBudget">;
}

/** A non-MCP route (JWKS, the authorization server…): true when it answered the request. */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

export interface GatewayServerOptions {
  /** The MCP endpoints. Alternatively `gate` + `upstream` (+ `mcpPath`) for one mount. */
  mounts?: Mount[];
  gate?: Gate;
  upstream?: Upstream;
  /** The MCP endpoint path of the single mount (default: the publicUrl's path). */
  mcpPath?: string;
  /** Extra routes, tried in order after /healthz and PRM, before the 404. */
  routes?: RouteHandler[];
  logger: Logger;
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  shutdownGraceMs?: number;
}

export interface GatewayServer {
  server: Server;
  readonly mounts: readonly Mount[];
  listen(port: number, host: string): Promise<AddressInfo>;
  /** Stop accepting, let in-flight requests finish (bounded by shutdownGraceMs), then close. */
  close(): Promise<void>;
  inFlight(): number;
}

function send(res: ServerResponse, spec: HttpResponseSpec): void {
  if (res.headersSent) return;
  res.writeHead(spec.status, spec.headers).end(spec.body);
}

function mountsOf(options: GatewayServerOptions): Mount[] {
  if (options.mounts && options.mounts.length > 0) return options.mounts;
  if (!options.gate || !options.upstream) {
    throw new McpGateError("ERR_INVALID_OPTION", "createGatewayServer: give mounts, or gate and upstream");
  }
  const path = options.mcpPath ?? new URL(options.gate.options.publicUrl).pathname;
  return [{ name: "default", path, gate: options.gate, upstream: options.upstream }];
}

/**
 * Forward an admitted request through a mount: the caller's shares (unread answers, the upstream's
 * connections), the identity hook, then the upstream (wrapped by `aroundForward`). The response owner answers any failure.
 */
async function forwardThrough(mount: Mount, entry: Entry): Promise<ForwardResult> {
  const { upstream } = mount;
  // The caller's shares first — of the memory for unread answers, of the upstream's connections:
  // a caller past either costs no identity work, and its call does not run.
  const { owner, plan } = entry;
  const denied = (plan.expectsAnswers ? owner.roomForAnswer() : undefined) ?? upstream.share?.take(entry);
  if (denied) {
    owner.refuse(denied);
    return { result: "refused" };
  }
  try {
    const ctx: ForwardContext = {
      req: entry.req,
      res: entry.res,
      admission: entry.admission,
      plan: entry.plan,
      owner: entry.owner,
      headers: {},
      meta: {},
    };
    if (mount.identity) {
      let id: UpstreamIdentity;
      try {
        id = await mount.identity(entry);
      } catch {
        id = { ok: false, reason: "identity hook failed" };
      }
      if (!id.ok) {
        entry.owner.refuse({ kind: "identity_unavailable" });
        return { result: "identity_unavailable" };
      }
      Object.assign(ctx.headers, id.headers);
      // A stdio child's identity environment, fixed or made when the child starts: one way for both.
      const fixed = id.env;
      const made = id.spawnEnv;
      if (fixed || made) ctx.spawnEnv = async () => ({ ...fixed, ...(made ? await made() : {}) });
      if (id.expiresAt !== undefined) entry.owner.endAt(id.expiresAt, "upstream");
    }
    return await (mount.aroundForward
      ? mount.aroundForward(ctx, forwardTo(upstream))
      : upstream.forward(ctx));
  } finally {
    upstream.share?.release(entry);
  }
}

/** `upstream.forward` as a function of its own, made once per upstream (not per request). */
const forwarders = new WeakMap<Upstream, (ctx: ForwardContext) => Promise<ForwardResult>>();
function forwardTo(upstream: Upstream): (ctx: ForwardContext) => Promise<ForwardResult> {
  let f = forwarders.get(upstream);
  if (!f) {
    f = (ctx) => upstream.forward(ctx);
    forwarders.set(upstream, f);
  }
  return f;
}

/**
 * The gateway's HTTP front: healthz, PRM, extra routes, and its MCP endpoints (one front door,
 * http/front-door.ts), on `node:http`.
 *
 * @example
 * const gw = createGatewayServer({ mounts: [{ name: "default", path: "/mcp", gate, upstream }], logger });
 * await gw.listen(8080, "127.0.0.1");
 */
export function createGatewayServer(options: GatewayServerOptions): GatewayServer {
  const { logger } = options;
  const mounts = mountsOf(options);
  const byPath = new Map(mounts.map((m) => [m.path, m]));
  const routes = options.routes ?? [];
  let active = 0;
  let closing = false;

  async function route(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (path.startsWith("/.well-known/"))
      for (const m of mounts) if (handleProtectedResourceMetadata(m.gate, req, res)) return;
    const mount = byPath.get(path);
    if (mount) {
      // Debug only: the headers as received. Credentials (Authorization, Cookie, configured secret
      // headers) are removed by the logger's redaction (observe/logger.ts), not here.
      if (logger.isLevelEnabled("debug"))
        logger.debug({ req: { method: req.method, url: req.url, headers: req.headers } }, "request received");
      await handleMcpRequest(req, res, {
        gate: mount.gate,
        name: mount.name,
        forward: (entry) => forwardThrough(mount, entry),
        ...(mount.owner ? { owner: mount.owner } : {}),
      });
      return;
    }
    for (const handler of routes) if (await handler(req, res)) return;
    send(res, mounts[0]!.gate.render({ kind: "not_found" }));
  }

  const requestTimeout = options.requestTimeoutMs ?? 60_000;
  // Node refuses headersTimeout > requestTimeout (when the latter is on); the smaller one wins anyway.
  const headersTimeout = Math.min(
    options.headersTimeoutMs ?? 10_000,
    requestTimeout > 0 ? requestTimeout : Number.POSITIVE_INFINITY,
  );
  const server = createServer(
    {
      requestTimeout,
      headersTimeout,
      // Node enforces both timeouts only when it sweeps its connections, every 30 s by default: a
      // slowloris client would hold a socket up to 30 s past the limit. Sweep at a quarter of the
      // shorter limit (bounded to 50 ms..1 s) so the limits mean what they say.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
    },
    (req, res) => {
      // A request arrived: the "must start a request" deadline set on connection no longer applies
      // (SSE responses may idle for as long as they like; keep-alive idling is keepAliveTimeout).
      if (req.socket.timeout) req.socket.setTimeout(0);
      const requestId = randomUUID();
      res.setHeader("x-request-id", requestId);
      const path = (req.url ?? "/").split("?")[0]!;
      if (closing) res.setHeader("connection", "close");
      if (path === "/healthz") {
        res
          .writeHead(200, { "content-type": "application/json", "cache-control": "no-store" })
          .end('{"status":"ok"}');
        return;
      }
      active++;
      route(req, res, path)
        .catch((err) => {
          // Never crash the process on a request; answer 500 without detail.
          logger.error({ requestId, err: (err as Error)?.message }, "request failed");
          if (!res.headersSent) send(res, mounts[0]!.gate.render({ kind: "internal_error" }));
          else res.end();
        })
        .finally(() => {
          active--;
        });
    },
  );
  // Expect: 100-continue goes through the front door: 100 only once the credential is accepted.
  deferContinue(server);
  // Node's headersTimeout runs from the first byte of a request: a connection that never sends one
  // would be held forever, and enough of them exhaust the descriptors. Every new connection gets
  // headersTimeout to start a request; when the socket times out before one, Node destroys it.
  server.on("connection", (socket) => socket.setTimeout(headersTimeout));
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    // RFC 9110 §15.5.9: too slow (headersTimeout / requestTimeout) is 408; RFC 6585 §5: 431.
    const status =
      err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? "408 Request Timeout"
        : err.code === "HPE_HEADER_OVERFLOW"
          ? "431 Request Header Fields Too Large"
          : "400 Bad Request";
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
    else socket.destroy();
  });

  return {
    server,
    mounts,
    inFlight: () => active,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException) => {
          // A busy or forbidden port is the operator's to fix: say which, in one line.
          const why =
            err.code === "EADDRINUSE"
              ? "address already in use"
              : err.code === "EACCES"
                ? "permission denied"
                : err.code === "EADDRNOTAVAIL"
                  ? "address not available on this host"
                  : (err.code ?? "error");
          reject(
            new McpGateError("ERR_CONFIG_INVALID", `cannot listen on ${host}:${port}: ${why}`, {
              cause: err,
            }),
          );
        };
        server.once("error", onError);
        server.listen(port, host, () => {
          server.off("error", onError);
          resolve(server.address() as AddressInfo);
        });
      });
    },
    async close() {
      closing = true;
      for (const m of mounts) m.upstream.drain?.();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const deadline = Date.now() + (options.shutdownGraceMs ?? 10_000);
      while (active > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
        server.closeIdleConnections();
      }
      server.closeAllConnections();
      await closed;
      await Promise.all(mounts.map((m) => m.upstream.close()));
    },
  };
}
