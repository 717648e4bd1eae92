import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ProbeResult, ProbeStatus } from "./probe.js";

const STATUSES: ProbeStatus[] = [
  "up",
  "auth_rejected",
  "server_error",
  "timeout",
  "unreachable",
  "protocol_error",
];

/** Prometheus metrics of the monitor, in a registry of their own (labels: target name and step; never a URL or key). */
export interface MonitorMetrics {
  registry: Registry;
  observe(target: string, result: ProbeResult): void;
  observeDrift(target: string): void;
  observeCertificate(target: string, notAfterMs: number): void;
}

/**
 * @example
 * const metrics = createMonitorMetrics();
 * metrics.observe("prod", await probeEndpoint(url));
 * res.end(await metrics.registry.metrics());
 */
export function createMonitorMetrics(): MonitorMetrics {
  const registry = new Registry();
  const up = new Gauge({
    name: "mcpgate_probe_up",
    help: "1 when the last probe found the target up, else 0",
    labelNames: ["target"],
    registers: [registry],
  });
  const status = new Gauge({
    name: "mcpgate_probe_status",
    help: "1 for the target's current probe status",
    labelNames: ["target", "status"],
    registers: [registry],
  });
  const latency = new Gauge({
    name: "mcpgate_probe_latency_seconds",
    help: "Duration of the last probe",
    labelNames: ["target"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "mcpgate_probe_duration_seconds",
    help: "Duration of probes",
    labelNames: ["target"],
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const stepOk = new Gauge({
    name: "mcpgate_probe_step_ok",
    help: "1 when the step succeeded in the last probe",
    labelNames: ["target", "step"],
    registers: [registry],
  });
  const stepHttp = new Gauge({
    name: "mcpgate_probe_step_http_status",
    help: "HTTP status of the step in the last probe (0: no response)",
    labelNames: ["target", "step"],
    registers: [registry],
  });
  const stepLatency = new Gauge({
    name: "mcpgate_probe_step_latency_seconds",
    help: "Duration of the step in the last probe",
    labelNames: ["target", "step"],
    registers: [registry],
  });
  const tools = new Gauge({
    name: "mcpgate_probe_tools",
    help: "Tools listed by the last successful probe",
    labelNames: ["target"],
    registers: [registry],
  });
  const checks = new Counter({
    name: "mcpgate_probe_checks_total",
    help: "Probes run, by outcome",
    labelNames: ["target", "status"],
    registers: [registry],
  });
  const drift = new Counter({
    name: "mcpgate_probe_schema_drift_total",
    help: "Tool schema changes seen",
    labelNames: ["target"],
    registers: [registry],
  });
  const cert = new Gauge({
    name: "mcpgate_probe_cert_expiry_timestamp_seconds",
    help: "When the target's TLS certificate expires",
    labelNames: ["target"],
    registers: [registry],
  });
  const seenSteps = new Map<string, Set<string>>();

  return {
    registry,
    observe(target, r) {
      up.set({ target }, r.status === "up" ? 1 : 0);
      for (const s of STATUSES) status.set({ target, status: s }, s === r.status ? 1 : 0);
      latency.set({ target }, r.latencyMs / 1000);
      duration.observe({ target }, r.latencyMs / 1000);
      checks.inc({ target, status: r.status });
      if (r.tools !== null) tools.set({ target }, r.tools);
      // Steps not reached this time are removed, so a dashboard never shows a stale success.
      const now = new Set<string>(r.steps.map((s) => s.name));
      for (const old of seenSteps.get(target) ?? []) {
        if (!now.has(old)) {
          stepOk.remove({ target, step: old });
          stepHttp.remove({ target, step: old });
          stepLatency.remove({ target, step: old });
        }
      }
      seenSteps.set(target, now);
      for (const s of r.steps) {
        stepOk.set({ target, step: s.name }, s.ok ? 1 : 0);
        stepHttp.set({ target, step: s.name }, s.httpStatus);
        stepLatency.set({ target, step: s.name }, s.latencyMs / 1000);
      }
    },
    observeDrift(target) {
      drift.inc({ target });
    },
    observeCertificate(target, notAfterMs) {
      cert.set({ target }, Math.floor(notAfterMs / 1000));
    },
  };
}
