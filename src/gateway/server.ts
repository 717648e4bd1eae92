import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { HttpResponseSpec } from "../core/challenge.js";
import { McpGateError } from "../core/errors.js";
import { displayOf } from "../core/identity.js";
import type { Gate } from "../gate/gate.js";
import { gateHeaders, readBody } from "../http/body.js";
import { handleProtectedResourceMetadata } from "../http/protected-resource-metadata.js";
import type { Logger } from "../observe/logger.js";
import type { RequestObservation } from "../observe/metrics.js";
import type { Upstream } from "./upstream.js";

/** Per-request summary handed to observers: what metrics observe, plus the request id and era. */
export interface RequestSummary extends RequestObservation {
  requestId: string;
  era?: string;
}

export interface GatewayServerOptions {
  gate: Gate;
  upstream: Upstream;
  logger: Logger;
  /** The MCP endpoint path (default "/mcp"). */
  mcpPath?: string;
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  shutdownGraceMs?: number;
  onRequest?: (summary: RequestSummary) => void;
}

export interface GatewayServer {
  server: Server;
  listen(port: number, host: string): Promise<AddressInfo>;
  /** Stop accepting, let in-flight requests finish (bounded by shutdownGraceMs), then close. */
  close(): Promise<void>;
  inFlight(): number;
}

function send(res: ServerResponse, spec: HttpResponseSpec): void {
  if (res.headersSent) return;
  res.writeHead(spec.status, spec.headers).end(spec.body);
}

/**
 * The gateway's HTTP front: healthz, PRM, and the MCP endpoint, on `node:http`.
 *
 * @example
 * const gw = createGatewayServer({ gate, upstream: createHttpUpstream({ url }), logger });
 * await gw.listen(8080, "127.0.0.1");
 */
export function createGatewayServer(options: GatewayServerOptions): GatewayServer {
  const { gate, upstream, logger } = options;
  const mcpPath = options.mcpPath ?? new URL(gate.options.publicUrl).pathname;
  let active = 0;
  let closing = false;

  async function handleMcp(req: IncomingMessage, res: ServerResponse, requestId: string, started: number) {
    const summary: RequestSummary = {
      requestId,
      httpMethod: req.method ?? "",
      status: 0,
      decision: "allow",
      latencyMs: 0,
    };
    let bodyText: string | undefined;
    if (req.method === "POST") {
      const body = await readBody(req, gate.options.maxBodyBytes!);
      if (!body.ok) {
        const spec = gate.render(
          body.tooLarge
            ? { kind: "body_too_large", limitBytes: gate.options.maxBodyBytes! }
            : { kind: "parse_error" },
        );
        send(res, spec);
        if (body.tooLarge) res.once("finish", () => req.socket.destroySoon?.());
        return finish(summary, spec.status, body.tooLarge ? "body_too_large" : "read_error");
      }
      bodyText = body.text;
    }
    const decision = await gate.admit({
      method: req.method ?? "GET",
      headers: gateHeaders(req),
      remoteAddress: req.socket.remoteAddress,
      requestId,
      ...(bodyText !== undefined ? { bodyText } : {}),
    });
    const a = decision.ok ? decision.admission : decision.admission;
    if (a) {
      summary.era = a.era;
      summary.rpcMethod = a.messages[0]?.method;
      summary.tool = a.messages.find((m) => m.method === "tools/call")?.name;
    }
    if (!decision.ok) {
      send(res, decision.response);
      return finish(
        summary,
        decision.response.status,
        decision.denial.kind,
        a ? displayOf(a.identity) : undefined,
      );
    }
    const admission = decision.admission;
    if (admission.forwardBody === "") {
      // Every message of the batch was answered by the gate.
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify(admission.localResponses));
      return finish(summary, 200, "denied", displayOf(admission.identity));
    }
    const outcome = await upstream.forward({
      admission,
      req,
      res,
      body: admission.forwardBody ?? bodyText,
      onHead: (status, sessionId) =>
        gate
          .onResponse(admission, {
            status,
            method: req.method ?? "POST",
            ...(sessionId ? { sessionId } : {}),
          })
          .catch((err) => {
            logger.error({ requestId, err: (err as Error).message }, "session binding failed");
            // A session that cannot be bound must not reach the client (fail closed: 503).
            if (admission.initialize && sessionId) throw err;
          }),
    });
    summary.upstreamMs = Math.round(outcome.upstreamMs * 100) / 100;
    if (outcome.result === "state_unavailable") {
      const spec = gate.render({ kind: "store_unavailable" });
      send(res, spec);
      return finish(summary, spec.status, "state_unavailable", displayOf(admission.identity));
    }
    if (outcome.result === "unavailable" || outcome.result === "timeout") {
      send(
        res,
        gate.render({ kind: outcome.result === "timeout" ? "upstream_timeout" : "upstream_unavailable" }),
      );
      return finish(
        summary,
        outcome.result === "timeout" ? 504 : 502,
        `upstream_${outcome.result}`,
        displayOf(admission.identity),
      );
    }
    return finish(
      summary,
      outcome.status,
      outcome.result === "ok" ? "allow" : `upstream_${outcome.result}`,
      displayOf(admission.identity),
    );

    function finish(s: RequestSummary, status: number, decisionName: string, principal?: string) {
      s.status = status;
      s.decision = decisionName;
      s.latencyMs = Math.round((performance.now() - started) * 100) / 100;
      logger.info(
        {
          requestId,
          principal,
          era: s.era,
          method: s.rpcMethod,
          tool: s.tool,
          httpMethod: s.httpMethod,
          decision: decisionName,
          status,
          latencyMs: s.latencyMs,
          upstreamMs: s.upstreamMs,
        },
        "request",
      );
      options.onRequest?.(s);
    }
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
      req.socket.setTimeout(0);
      const started = performance.now();
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
      if (handleProtectedResourceMetadata(gate, req, res)) return;
      if (path !== mcpPath) {
        send(res, gate.render({ kind: "not_found" }));
        return;
      }
      // Debug only: the headers as received. Credentials (Authorization, Cookie, configured secret
      // headers) are removed by the logger's redaction (observe/logger.ts), not here.
      if (logger.isLevelEnabled("debug"))
        logger.debug(
          { requestId, req: { method: req.method, url: req.url, headers: req.headers } },
          "request received",
        );
      active++;
      handleMcp(req, res, requestId, started)
        .catch((err) => {
          // Never crash the process on a request; answer 500 without detail.
          logger.error({ requestId, err: (err as Error)?.message }, "request failed");
          if (!res.headersSent)
            res.writeHead(500, { "content-type": "application/json" }).end('{"error":"internal error"}');
          else res.end();
        })
        .finally(() => {
          active--;
        });
    },
  );
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
      upstream.drain?.();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const deadline = Date.now() + (options.shutdownGraceMs ?? 10_000);
      while (active > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
        server.closeIdleConnections();
      }
      server.closeAllConnections();
      await closed;
      await upstream.close();
    },
  };
}
