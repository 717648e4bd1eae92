import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/**
 * Prometheus metrics (prom-client) in a registry of their own, served on a separate listener
 * (`metrics.listen`) so that the MCP port never exposes them. Labels are bounded: no principal,
 * no key, no free text; tool names are capped (the first `maxTools` distinct names, then "other").
 */

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /** Live session count, read at scrape time (the state store's `sessionCount`). */
  sessionCount?: () => Promise<number>;
  /** Distinct tool label values before "other". Default 200. */
  maxTools?: number;
  /** Add Node's process metrics (`process_*`, `nodejs_*`). Default true. */
  defaultMetrics?: boolean;
}

/** One finished request, as the gateway reports it (gateway/server.ts `RequestSummary`). */
export interface RequestObservation {
  httpMethod: string;
  rpcMethod?: string;
  tool?: string;
  status: number;
  decision: string;
  latencyMs: number;
  upstreamMs?: number;
  /** The mount (upstream) name: the `upstream` label (docs/upstreams.md). Default "default". */
  mount?: string;
}

export interface GateMetrics {
  readonly registry: Registry;
  request(r: RequestObservation): void;
  authFailure(reason: string): void;
  toolCall(tool: string, decision: string): void;
  rateLimited(): void;
  lockout(): void;
  storeError(store: string): void;
  jwksFetch(outcome: "ok" | "error"): void;
  authSpike(): void;
  alert(kind: string, outcome: string): void;
  auditEvent(type: string): void;
  auditError(sink: string): void;
  /** The text exposition (what `/metrics` serves). */
  text(): Promise<string>;
}

// MCP methods a client may send (2025-03-26 … 2026-07-28). Anything else is "other".
const RPC_METHODS = new Set([
  "initialize",
  "notifications/initialized",
  "ping",
  "server/discover",
  "tools/list",
  "tools/call",
  "resources/list",
  "resources/templates/list",
  "resources/read",
  "resources/subscribe",
  "resources/unsubscribe",
  "prompts/list",
  "prompts/get",
  "completion/complete",
  "logging/setLevel",
  "notifications/cancelled",
  "notifications/progress",
  "notifications/roots/list_changed",
  "tasks/get",
  "tasks/list",
  "tasks/result",
  "tasks/cancel",
]);
const HTTP_METHODS = new Set(["GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH"]);

/**
 * A label value from an open set, bounded: the first `max` distinct values pass, later ones become
 * "other". Values are cut to 64 printable characters.
 */
function cappedLabels(max: number): (value: string) => string {
  const seen = new Set<string>();
  return (raw) => {
    const v = raw.replace(/[^\x20-\x7e]/g, "?").slice(0, 64) || "unknown";
    if (seen.has(v)) return v;
    if (seen.size >= max) return "other";
    seen.add(v);
    return v;
  };
}

/**
 * Build the metrics.
 *
 * @example
 * const metrics = createMetrics({ sessionCount: () => state.sessionCount() });
 * metrics.request({ httpMethod: "POST", status: 200, decision: "allow", latencyMs: 3.2 });
 */
export function createMetrics(options: MetricsOptions = {}): GateMetrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const toolLabel = cappedLabels(options.maxTools ?? 200);
  // Closed vocabularies in practice (reasons, decisions, stores), capped anyway.
  const reasonLabel = cappedLabels(50);
  const decisionLabel = cappedLabels(50);
  const storeLabel = cappedLabels(20);
  const upstreamLabel = cappedLabels(100);

  const requests = new Counter({
    name: "mcpgate_requests_total",
    help: "MCP endpoint requests by upstream, HTTP method, JSON-RPC method and status",
    labelNames: ["upstream", "method", "rpc_method", "status"],
    registers,
  });
  const authFailures = new Counter({
    name: "mcpgate_auth_failures_total",
    help: "Failed authentications by reason",
    labelNames: ["reason"],
    registers,
  });
  const toolCalls = new Counter({
    name: "mcpgate_tool_calls_total",
    help: "tools/call messages by tool and decision",
    labelNames: ["tool", "decision"],
    registers,
  });
  const rateLimited = new Counter({
    name: "mcpgate_rate_limit_hits_total",
    help: "Requests refused by a rate limit",
    registers,
  });
  const lockouts = new Counter({
    name: "mcpgate_lockouts_total",
    help: "Source addresses locked out for credential guessing",
    registers,
  });
  const storeErrors = new Counter({
    name: "mcpgate_store_errors_total",
    help: "Store failures by store",
    labelNames: ["store"],
    registers,
  });
  const jwksFetches = new Counter({
    name: "mcpgate_jwks_fetches_total",
    help: "JWKS fetches",
    registers,
  });
  const jwksFailures = new Counter({
    name: "mcpgate_jwks_fetch_failures_total",
    help: "JWKS fetches that failed",
    registers,
  });
  const spikes = new Counter({
    name: "mcpgate_auth_failure_spikes_total",
    help: "401 spikes detected over the recent baseline",
    registers,
  });
  const alerts = new Counter({
    name: "mcpgate_alerts_total",
    help: "Webhook alerts by kind and outcome (sent, failed, dropped)",
    labelNames: ["kind", "outcome"],
    registers,
  });
  const auditEvents = new Counter({
    name: "mcpgate_audit_events_total",
    help: "Audit events recorded by type",
    labelNames: ["type"],
    registers,
  });
  const auditErrors = new Counter({
    name: "mcpgate_audit_sink_errors_total",
    help: "Audit batches a sink failed to write",
    labelNames: ["sink"],
    registers,
  });
  const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
  const requestSeconds = new Histogram({
    name: "mcpgate_request_duration_seconds",
    help: "Time from request arrival to response end, by upstream and HTTP method",
    labelNames: ["upstream", "method"],
    buckets: latencyBuckets,
    registers,
  });
  const upstreamSeconds = new Histogram({
    name: "mcpgate_upstream_duration_seconds",
    help: "Time spent waiting for the upstream MCP server, by upstream",
    labelNames: ["upstream"],
    buckets: latencyBuckets,
    registers,
  });
  const sessionCount = options.sessionCount;
  new Gauge({
    name: "mcpgate_active_sessions",
    help: "Live MCP sessions bound to a principal",
    registers,
    async collect() {
      if (!sessionCount) return;
      try {
        this.set(await sessionCount());
      } catch {
        // A store outage shows in mcpgate_store_errors_total; the gauge keeps its last value.
      }
    },
  });

  return {
    registry,
    request(r) {
      const method = HTTP_METHODS.has(r.httpMethod) ? r.httpMethod : "other";
      const rpc = r.rpcMethod === undefined ? "none" : RPC_METHODS.has(r.rpcMethod) ? r.rpcMethod : "other";
      // The mount's name (docs/upstreams.md): configured names, a closed set; capped anyway.
      const upstream = upstreamLabel(r.mount ?? "default");
      requests.inc({ upstream, method, rpc_method: rpc, status: String(r.status) });
      requestSeconds.observe({ upstream, method }, r.latencyMs / 1000);
      if (r.upstreamMs !== undefined) upstreamSeconds.observe({ upstream }, r.upstreamMs / 1000);
    },
    authFailure: (reason) => authFailures.inc({ reason: reasonLabel(reason) }),
    toolCall: (tool, decision) => toolCalls.inc({ tool: toolLabel(tool), decision: decisionLabel(decision) }),
    rateLimited: () => rateLimited.inc(),
    lockout: () => lockouts.inc(),
    storeError: (store) => storeErrors.inc({ store: storeLabel(store) }),
    jwksFetch(outcome) {
      jwksFetches.inc();
      if (outcome === "error") jwksFailures.inc();
    },
    authSpike: () => spikes.inc(),
    alert: (kind, outcome) => alerts.inc({ kind: reasonLabel(kind), outcome: decisionLabel(outcome) }),
    auditEvent: (type) => auditEvents.inc({ type: reasonLabel(type) }),
    auditError: (sink) => auditErrors.inc({ sink: storeLabel(sink) }),
    text: () => registry.metrics(),
  };
}

/** A running `/metrics` listener. */
export interface MetricsServer {
  readonly url: string;
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/**
 * Parse `metrics.listen`: "127.0.0.1:9464", "[::1]:9464" or ":9464" (loopback).
 *
 * @example parseListen("127.0.0.1:0") // { host: "127.0.0.1", port: 0 }
 */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new TypeError(`metrics.listen: expected host:port, got "${listen}"`);
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port };
}

/**
 * Serve `GET /metrics` on its own listener.
 *
 * @example const srv = await startMetricsServer(metrics, "127.0.0.1:9464"); // srv.url
 */
export async function startMetricsServer(metrics: GateMetrics, listen: string): Promise<MetricsServer> {
  const { host, port } = parseListen(listen);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    metrics
      .text()
      .then((text) => {
        res.writeHead(200, { "content-type": metrics.registry.contentType, "cache-control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : text);
      })
      .catch(() => res.writeHead(500, { "content-type": "text/plain" }).end("metrics unavailable\n"));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.address.includes(":") ? `[${address.address}]` : address.address;
  return {
    url: `http://${urlHost}:${address.port}/metrics`,
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
