import type { AuditEvent } from "../core/audit-event.js";
import type { RequestSummary } from "../core/contracts.js";
import type { Alerter } from "./alerts.js";
import { type AuditSink, type AuditTrail, createAuditTrail } from "./audit.js";
import type { Logger } from "./logger.js";
import type { GateMetrics } from "./metrics.js";
import { createSpikeDetector, type SpikeDetectorOptions } from "./spike.js";
import { activeTraceId } from "./tracing.js";

/**
 * The one place that fans what the gate reports out to the audit trail, the metrics, the logger and
 * the alerts. It is the gate's `GateObserver` (core/contracts.ts, matched structurally), the gateway
 * server's `onRequest` hook, the guard's `onLockout`, and the JWT verifier's JWKS fetch hook.
 */

/** Options of {@link createObserver}. Every part is optional. */
export interface ObserverOptions {
  logger?: Logger;
  /** Audit sinks (file, PostgreSQL). Without any, audit events still reach the logger. */
  auditSinks?: AuditSink[];
  /** See AuditTrailOptions.successIntervalMs. Default 60 000. */
  auditSuccessIntervalMs?: number;
  metrics?: GateMetrics;
  alerts?: Alerter;
  /** 401 spike detection (on by default); `false` turns it off. */
  spike?: Omit<SpikeDetectorOptions, "onSpike"> | false;
  /** At most one store-outage alert per store in this interval. Default 300 000 ms. */
  storeAlertCooldownMs?: number;
  now?: () => number;
}

/** A request as the front door summarises it (core/contracts.ts `RequestSummary`). */
export type ObservedRequest = RequestSummary;

export interface Observer {
  audit(event: AuditEvent): void;
  authFailure(reason: string): void;
  decision(d: { method?: string; tool?: string; decision: string }): void;
  storeError(store: string, err: unknown): void;
  /** Called once per finished MCP request. */
  request(summary: ObservedRequest): void;
  /** Called once per new lockout. */
  lockout(source: string, seconds: number): void;
  jwksFetch(outcome: "ok" | "error"): void;
  readonly trail: AuditTrail;
  /** Flush the audit trail and the alert queue. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const WARN_EVENTS = new Set(["lockout", "store_error", "session_mismatch", "upstream_credentials"]);

/** A store error reduced to what is safe and useful to log: the error's code or class name. */
function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown } | undefined;
  if (typeof e?.code === "string") return e.code;
  if (typeof e?.name === "string") return e.name;
  return "error";
}

/**
 * An audit event as a log line: `trace_id` at the top level, where every line written inside a
 * request has it (docs/observability.md, docs/tracing.md), and not a second time inside `audit`.
 * The event itself keeps it for the sinks (the file, the table's `trace_id` column).
 *
 * @example auditLogLine({ type: "denied", time, trace_id: "4bf9…" }) // { trace_id: "4bf9…", audit: { type: "denied", time } }
 */
function auditLogLine(event: AuditEvent): { audit: Omit<AuditEvent, "trace_id">; trace_id?: string } {
  const { trace_id, ...audit } = event;
  // Set only when known: an undefined field would override the mixin's `trace_id` when merged.
  return trace_id === undefined ? { audit } : { trace_id, audit };
}

/**
 * Build the observer.
 *
 * @example
 * const observer = createObserver({ logger, metrics: createMetrics(), auditSinks: [createFileAuditSink({ path })] });
 * createGate({ verifiers, publicUrl, observer });
 */
export function createObserver(options: ObserverOptions = {}): Observer {
  const { logger, metrics, alerts } = options;
  const now = options.now ?? Date.now;
  const storeAlertCooldownMs = options.storeAlertCooldownMs ?? 300_000;
  const lastStoreAlert = new Map<string, number>();

  const trail = createAuditTrail({
    sinks: options.auditSinks ?? [],
    ...(options.auditSuccessIntervalMs !== undefined
      ? { successIntervalMs: options.auditSuccessIntervalMs }
      : {}),
    now,
    onEvent(event) {
      metrics?.auditEvent(event.type);
      if (!logger) return;
      const line = auditLogLine(event);
      if (WARN_EVENTS.has(event.type)) logger.warn(line, "audit");
      else if (event.type === "auth_success") logger.debug(line, "audit");
      else logger.info(line, "audit");
    },
    onError(sink, err) {
      metrics?.auditError(sink);
      logger?.warn({ sink, code: errorCode(err) }, "audit sink failed");
      outage(`audit:${sink}`, err);
    },
  });

  const spikes =
    options.spike === false
      ? undefined
      : createSpikeDetector({
          ...options.spike,
          now,
          onSpike(info) {
            metrics?.authSpike();
            logger?.warn({ spike: info }, "401 spike over the recent baseline");
            alerts?.send({ kind: "auth_failure_spike", ...info });
          },
        });

  function outage(store: string, err: unknown): void {
    const t = now();
    const last = lastStoreAlert.get(store);
    if (last !== undefined && t - last < storeAlertCooldownMs) return;
    lastStoreAlert.set(store, t);
    alerts?.send({ kind: "store_outage", store, code: errorCode(err) });
  }

  return {
    trail,
    audit(event) {
      if (event.type === "rate_limited") metrics?.rateLimited();
      // The request's trace, so an audit event leads to it (docs/tracing.md); none without an SDK.
      const traceId = event.trace_id === undefined ? activeTraceId() : undefined;
      trail.record(traceId ? { ...event, trace_id: traceId } : event);
    },
    authFailure(reason) {
      metrics?.authFailure(reason);
    },
    decision(d) {
      if (d.tool !== undefined && d.method === "tools/call") metrics?.toolCall(d.tool, d.decision);
    },
    storeError(store, err) {
      metrics?.storeError(store);
      logger?.warn({ store, code: errorCode(err) }, "store error");
      outage(store, err);
    },
    request(s) {
      metrics?.request(s);
      if (s.status === 401) spikes?.record();
      // Tool calls that went upstream; refused ones were counted when the gate refused them.
      for (const tool of s.forwardedTools ?? []) metrics?.toolCall(tool, s.decision);
      logger?.info(
        {
          requestId: s.requestId,
          principal: s.principal,
          // The upstream's name (docs/upstreams.md); absent for the one-upstream config's mount.
          upstream: s.mount === "default" ? undefined : s.mount,
          era: s.era,
          method: s.rpcMethod,
          tool: s.tool,
          httpMethod: s.httpMethod,
          decision: s.decision,
          status: s.status,
          latencyMs: s.latencyMs,
          upstreamMs: s.upstreamMs,
        },
        "request",
      );
    },
    lockout(source, seconds) {
      metrics?.lockout();
      logger?.warn({ ip: source, seconds }, "source locked out after repeated authentication failures");
      alerts?.send({ kind: "lockout", ip: source, seconds });
    },
    jwksFetch(outcome) {
      metrics?.jwksFetch(outcome);
    },
    async flush() {
      await trail.flush();
      await alerts?.flush();
    },
    async close() {
      await trail.close();
      await alerts?.close();
    },
  };
}
