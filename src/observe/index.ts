/**
 * `mcpgate/observe`: logs (pino), metrics (prom-client), audit, the credential guard, alerts and
 * the one observer that fans the gate's reports out to them. Library users hand the observer to
 * `createGate({ observer })` (or `mcpAuth({ observer })`) and get the same metrics, request logs and
 * 401-spike detection as the gateway.
 *
 * @example
 * import { createMetrics, createObserver } from "mcpgate/observe";
 * const metrics = createMetrics();
 * app.use(mcpAuth({ verifiers, publicUrl, observer: createObserver({ metrics }) }));
 */
export {
  type Alert,
  type AlertDelivery,
  type Alerter,
  type AlerterOptions,
  type AlertKind,
  createAlerter,
} from "./alerts.js";
export {
  type AuditSink,
  type AuditTrail,
  type AuditTrailOptions,
  createAuditTrail,
  createFileAuditSink,
} from "./audit.js";
export {
  type CredentialGuard,
  createGuard,
  createMemoryGuardStore,
  type GuardOptions,
  type GuardStore,
} from "./guard.js";
export { createLogger, type LoggerOptions } from "./logger.js";
export {
  createMetrics,
  type GateMetrics,
  type MetricsOptions,
  type MetricsServer,
  startMetricsServer,
} from "./metrics.js";
export { createObserver, type Observer, type ObserverOptions } from "./observer.js";
export { createSpikeDetector, type SpikeDetectorOptions } from "./spike.js";
export { activeTraceId, traceLogFields } from "./tracing.js";
export { traceAuthHttpCalls } from "./tracing-http.js";
