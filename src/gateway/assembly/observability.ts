import { durationMs, type GatewayConfig } from "../../config.js";
import { McpGateError } from "../../core/errors.js";
import { type Alerter, createAlerter } from "../../observe/alerts.js";
import { type AuditSink, createFileAuditSink } from "../../observe/audit.js";
import { type CredentialGuard, createGuard, type GuardStore } from "../../observe/guard.js";
import type { Logger } from "../../observe/logger.js";
import {
  createMetrics,
  type GateMetrics,
  type MetricsServer,
  startMetricsServer,
} from "../../observe/metrics.js";
import { createObserver, type Observer } from "../../observe/observer.js";
import { parseKeyStoreLocation } from "../../stores/open-key-store.js";

/**
 * Build the observability parts a configuration asks for (docs/observability.md): the audit sinks
 * (`logging.audit`, and the PostgreSQL table when `auth.apiKeys.store` is postgres://), metrics and
 * their listener (`metrics.listen`, only when a `metrics` section is present), alerts
 * (`alerts.webhook`), and the credential-guessing guard (`guard.*`, on by default; on Redis when
 * `state.redis` is set so every instance agrees).
 */

export interface Observability {
  observer: Observer;
  guard: CredentialGuard;
  metrics?: GateMetrics;
  metricsServer?: MetricsServer;
  alerts?: Alerter;
  close(): Promise<void>;
}

export interface ObservabilityContext {
  logger: Logger;
  /** Live session count for the `mcpgate_active_sessions` gauge, read at scrape time. */
  sessionCount?: () => Promise<number> | undefined;
}

/**
 * Open the audit sinks a configuration names. Used by the gateway and by `mcpgate keys`.
 *
 * @example const sinks = await openAuditSinks(config); // [] when nothing is configured
 */
export async function openAuditSinks(config: {
  logging: { audit?: string | undefined };
  auth: { apiKeys?: { store: string } | undefined };
}): Promise<AuditSink[]> {
  const sinks: AuditSink[] = [];
  if (config.logging.audit) sinks.push(createFileAuditSink({ path: config.logging.audit }));
  const store = config.auth.apiKeys?.store;
  if (store && /^postgres(ql)?:\/\//.test(store)) {
    const loc = parseKeyStoreLocation(store);
    if (loc.kind === "postgres") {
      // Loaded only here, so a deployment without PostgreSQL never loads `pg` for auditing.
      const { createPostgresAuditSink } = await import("../../stores/postgres-audit.js");
      const sink = createPostgresAuditSink({
        connectionString: loc.connectionString,
        ...(loc.schema !== undefined ? { schema: loc.schema } : {}),
      });
      await sink.init();
      sinks.push(sink);
    }
  }
  return sinks;
}

async function openGuardStore(config: GatewayConfig): Promise<GuardStore | undefined> {
  if (!config.state.redis) return undefined;
  const { createRedisGuardStore } = await import("../../stores/redis-guard.js");
  return createRedisGuardStore({ url: config.state.redis, prefix: config.state.prefix });
}

/**
 * Build and start everything observability needs for one gateway.
 *
 * @example
 * const obs = await buildObservability(config, { logger });
 * createGate({ …, guard: obs.guard, observer: obs.observer });
 */
export async function buildObservability(
  config: GatewayConfig,
  ctx: ObservabilityContext,
): Promise<Observability> {
  const { logger } = ctx;
  let alerts: Alerter | undefined;
  let metrics: GateMetrics | undefined;
  if (config.metrics) {
    metrics = createMetrics({
      sessionCount: async () => (await ctx.sessionCount?.()) ?? 0,
    });
  }
  if (config.alerts) {
    if (!config.alerts.secret || config.alerts.secret.length < 16) {
      throw new McpGateError(
        "ERR_CONFIG_INVALID",
        "alerts.secret: a signing secret of at least 16 characters is required with alerts.webhook",
      );
    }
    alerts = createAlerter({
      url: config.alerts.webhook,
      secret: config.alerts.secret,
      onOutcome: (kind, outcome) => {
        metrics?.alert(kind, outcome);
        if (outcome !== "sent") logger.warn({ kind, outcome }, "alert not delivered");
      },
    });
  }
  const auditSinks = await openAuditSinks(config);
  const observer = createObserver({
    logger,
    auditSinks,
    ...(metrics ? { metrics } : {}),
    ...(alerts ? { alerts } : {}),
  });
  const g = config.guard;
  const store = await openGuardStore(config);
  const guard = createGuard({
    failures: g?.failures ?? 20,
    windowMs: durationMs(g?.window ?? "1m"),
    lockoutMs: durationMs(g?.lockout ?? "15m"),
    trustProxy: g?.trustProxy ?? false,
    ...(store ? { store } : {}),
    onLockout: (source, seconds) => observer.lockout(source, seconds),
    onStoreError: (err) => {
      observer.storeError("guard", err);
      observer.audit({
        type: "store_error",
        time: new Date().toISOString(),
        reason: "guard store unavailable",
      });
    },
  });
  let metricsServer: MetricsServer | undefined;
  if (metrics && config.metrics) {
    metricsServer = await startMetricsServer(metrics, config.metrics.listen);
    logger.info({ url: metricsServer.url }, "metrics listening");
  }
  return {
    observer,
    guard,
    ...(metrics ? { metrics } : {}),
    ...(metricsServer ? { metricsServer } : {}),
    ...(alerts ? { alerts } : {}),
    async close() {
      await metricsServer?.close();
      await observer.close();
      await guard.close();
    },
  };
}
