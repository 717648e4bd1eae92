import { context, DiagLogLevel, diag, propagation, trace } from "@opentelemetry/api";
import type { Logger } from "../observe/logger.js";
import { traceAuthHttpCalls } from "../observe/tracing-http.js";
import type { SamplerName, TracingSettings } from "./tracing-config.js";

/**
 * The gateway's OpenTelemetry SDK (docs/tracing.md): the official trace SDK with the OTLP/HTTP
 * (protobuf) exporter behind a bounded batch processor, the W3C trace-context propagator and an
 * AsyncLocalStorage context manager, registered globally so that `src/observe/tracing*.ts` (which
 * only knows `@opentelemetry/api`) records. Loaded only when tracing is on: a gateway without
 * `tracing:` or `OTEL_*` loads none of it.
 */

/** The running SDK, as the gateway holds it. */
export interface GatewayTracing {
  /** The OTLP traces URL spans go to (no query string), when on. */
  readonly url: string | undefined;
  /** Export what is buffered now. */
  flush(): Promise<void>;
  /** Flush, then stop: bounded by `timeoutMs` so an unreachable collector cannot hold up the exit. */
  shutdown(timeoutMs?: number): Promise<void>;
}

const OFF: GatewayTracing = Object.freeze({
  url: undefined,
  flush: async () => {},
  shutdown: async () => {},
});

/** The URL as it may be logged: no userinfo, no query. */
function loggableUrl(raw: string): string {
  try {
    const u = new URL(raw);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "(invalid URL)";
  }
}

async function buildSampler(name: SamplerName, ratio: number) {
  const sdk = await import("@opentelemetry/sdk-trace");
  const root = name.endsWith("always_off")
    ? new sdk.AlwaysOffSampler()
    : name.endsWith("traceidratio")
      ? new sdk.TraceIdRatioBasedSampler(ratio)
      : new sdk.AlwaysOnSampler();
  return name.startsWith("parentbased_") ? new sdk.ParentBasedSampler({ root }) : root;
}

/**
 * Settle within `ms`, whatever `p` does; a rejection is reported to `onError`, and so is running
 * out of time (spans still buffered are then lost: the operator should know).
 */
function bounded(p: Promise<unknown>, ms: number, onError: (err: unknown) => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(
      () => {},
      (err) => onError(err),
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        onError(`no answer from the collector within ${ms} ms; buffered spans may be lost`);
        resolve();
      }, ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Start the SDK for these settings (undefined: tracing off, nothing loaded). A process that already
 * has a global tracer provider (a second gateway in one process) keeps it: this gateway's spans go
 * there, and its shutdown leaves it alone. The settings come from `resolveTracing`, which has
 * refused an endpoint that is not an http(s) URL.
 *
 * @example const tracing = await startTracing(resolveTracing(config.tracing, env), logger);
 */
export async function startTracing(
  settings: TracingSettings | undefined,
  logger?: Logger,
): Promise<GatewayTracing> {
  if (!settings) return OFF;
  for (const w of settings.warnings) logger?.warn(`tracing: ${w}`);
  const [
    sdk,
    { OTLPTraceExporter },
    resources,
    { W3CTraceContextPropagator },
    { AsyncLocalStorageContextManager },
  ] = await Promise.all([
    import("@opentelemetry/sdk-trace"),
    import("@opentelemetry/exporter-trace-otlp-proto"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/core"),
    import("@opentelemetry/context-async-hooks"),
  ]);
  // Resource: the service and `OTEL_RESOURCE_ATTRIBUTES` only. No process or host detector: a
  // process's command line can carry an upstream's arguments (and their secrets).
  const detected = resources.detectResources({ detectors: [resources.envDetector] });
  const resource = resources
    .defaultResource()
    .merge(detected)
    .merge(
      resources.resourceFromAttributes({
        ...settings.resourceAttributes,
        "service.name": settings.serviceName,
      }),
    );
  const exporter = new OTLPTraceExporter({ url: settings.url, headers: { ...settings.headers } });
  const provider = new sdk.TracerProvider({
    resource,
    sampler: await buildSampler(settings.sampler, settings.ratio),
    // Every attribute value is bounded: some come from request headers (mcp-protocol-version).
    spanLimits: { attributeValueLengthLimit: 1024, attributeCountLimit: 64, eventCountLimit: 16 },
    // Bounded: at most 2048 spans wait for export; past that new spans are dropped, never buffered.
    spanProcessors: [
      new sdk.BatchSpanProcessor({
        exporter,
        maxQueueSize: 2048,
        scheduledDelayMillis: settings.scheduleDelayMs,
      }),
    ],
  });

  const owns = trace.setGlobalTracerProvider(provider);
  if (!owns) {
    logger?.warn("tracing: this process already has a tracer provider; the gateway's spans go to it");
    await provider.shutdown();
    return OFF;
  }
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  // The SDK reports export failures (collector down, refused) through `diag`: to our log at warn,
  // as a short message string only (never the arguments, which can hold request details).
  const warn = (message: unknown) =>
    logger?.warn(
      { otel: String(message instanceof Error ? message.message : message).slice(0, 200) },
      "tracing: export problem",
    );
  if (logger) {
    diag.setLogger(
      { error: warn, warn, info: () => {}, debug: () => {}, verbose: () => {} },
      { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
    );
  }
  const stopHttpSpans = traceAuthHttpCalls();
  const url = loggableUrl(settings.url);
  logger?.info(
    { tracing: { url, sampler: settings.sampler, ratio: settings.ratio } },
    "tracing on (OTLP/HTTP)",
  );

  let stopped: Promise<void> | undefined;
  return {
    url,
    flush: () => bounded(provider.forceFlush(), 10_000, warn),
    shutdown(timeoutMs = 10_000) {
      stopped ??= (async () => {
        stopHttpSpans();
        await bounded(provider.shutdown(), timeoutMs, warn);
        trace.disable();
        propagation.disable();
        context.disable();
        if (logger) diag.disable();
      })();
      return stopped;
    },
  };
}
