/**
 * `mcpgate/probe`: check an authenticated MCP endpoint (one probe) and monitor several on a schedule.
 *
 * @example
 * import { probeEndpoint } from "mcpgate/probe";
 * const r = await probeEndpoint("https://mcp.example.com/mcp", { key: process.env.MCPGATE_PROBE_KEY });
 */

export {
  verifyWebhookPayload,
  WEBHOOK_SIGNATURE_HEADER,
  WEBHOOK_TIMESTAMP_HEADER,
} from "../core/webhook-signature.js";
export {
  type Alert,
  type AlertDelivery,
  type Alerter,
  type AlerterOptions,
  type AlertKind,
  createAlerter,
} from "../observe/alerts.js";
export {
  createMemoryHistory,
  type HistoryStore,
  type MonitorEvent,
  openHistoryStore,
  type ProbeRecord,
} from "../stores/probe-history.js";
export {
  createMonitor,
  type Monitor,
  type MonitorOptions,
  type MonitorSnapshot,
  type TargetStatus,
} from "./monitor.js";
export {
  loadMonitorConfig,
  type MonitorConfig,
  type MonitorConfigInput,
  type MonitorTarget,
  monitorConfigSchema,
  resolveMonitorConfig,
} from "./monitor-config.js";
export { createMonitorMetrics, type MonitorMetrics } from "./monitor-metrics.js";
export {
  type ChallengeState,
  LEGACY_PROTOCOL_VERSION,
  MODERN_PROTOCOL_VERSION,
  type ProbeOptions,
  type ProbeResult,
  type ProbeStatus,
  type ProbeStep,
  probeEndpoint,
} from "./probe.js";
export type { FetchLike } from "./rpc-exchange.js";
export { hashToolSchemas, stableStringify, type ToolShape } from "./schema-hash.js";
export { renderLatencyChart, renderStatusPage, type StatusServer, startStatusServer } from "./status-page.js";
export { type CertificateExpiry, readCertificateExpiry } from "./tls-expiry.js";
