import { z } from "zod";
import { McpGateError } from "../core/errors.js";

/**
 * The `tracing:` section of the gateway configuration and its resolution against the standard
 * OpenTelemetry environment variables (docs/tracing.md). A field in the file wins over the
 * variable; the variable fills what the file leaves out.
 */

/** The sampler names of the OpenTelemetry SDK environment specification (`OTEL_TRACES_SAMPLER`). */
export const SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;
export type SamplerName = (typeof SAMPLERS)[number];

/** `tracing:` (DESIGN.md §9 "Tracing"). */
export const tracingSchema = z
  .strictObject({
    /** `false` turns tracing off even when `OTEL_*` variables are set. */
    enabled: z.boolean().default(true),
    /** OTLP/HTTP base URL (as `OTEL_EXPORTER_OTLP_ENDPOINT`): `/v1/traces` is appended. */
    endpoint: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//i.test(u), { message: "tracing.endpoint must be an http(s) URL" })
      .optional(),
    serviceName: z.string().min(1).optional(),
    sampler: z.enum(SAMPLERS).optional(),
    /** Ratio for the `traceidratio` samplers; alone, it means `parentbased_traceidratio`. */
    sampleRatio: z.number().min(0).max(1).optional(),
    /** Headers for the OTLP export (e.g. a vendor's API key: use `${VAR}`). Never put on a span. */
    headers: z.record(z.string(), z.string()).optional(),
    /** Extra resource attributes (`deployment.environment.name: prod`). */
    resourceAttributes: z.record(z.string(), z.string()).optional(),
  })
  .optional();
export type TracingConfig = z.infer<typeof tracingSchema>;

/** What the gateway's SDK setup needs, resolved from the file and the environment. */
export interface TracingSettings {
  /** The OTLP/HTTP traces URL (…/v1/traces). */
  url: string;
  serviceName: string;
  sampler: SamplerName;
  ratio: number;
  headers: Record<string, string>;
  resourceAttributes: Record<string, string>;
  /** Longest wait before a batch of spans is exported (`OTEL_BSP_SCHEDULE_DELAY`, default 5000). */
  scheduleDelayMs: number;
  /** Problems with the environment that did not stop start-up (logged as warnings). */
  warnings: string[];
}

/** Any of these set means "trace" even without a `tracing:` section (the contract). */
const TURN_ON_VARIABLES = [
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_SERVICE_NAME",
  "OTEL_TRACES_SAMPLER",
] as const;

const DEFAULT_BASE = "http://localhost:4318";

function variable(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

/** `base` + `/v1/traces`, as the OTLP exporter specification builds a signal URL from a base URL. */
function tracesUrl(base: string): string {
  return `${base.replace(/\/+$/, "")}/v1/traces`;
}

/**
 * Decide whether the gateway traces, and with what. Undefined means off: no SDK is loaded and the
 * tracing calls in the request path stay the API's no-ops.
 *
 * Off when `tracing.enabled` is false, `OTEL_SDK_DISABLED=true`, or neither a `tracing:` section nor
 * one of `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`,
 * `OTEL_TRACES_SAMPLER` is present (and, without a section, when `OTEL_TRACES_EXPORTER=none`).
 *
 * Throws `ERR_CONFIG_INVALID` (naming the settings, never the URL) when the traces endpoint is not
 * an http(s) URL.
 *
 * @example const settings = resolveTracing(config.tracing, process.env);
 */
export function resolveTracing(config: TracingConfig, env: NodeJS.ProcessEnv): TracingSettings | undefined {
  if (config?.enabled === false) return undefined;
  if (variable(env, "OTEL_SDK_DISABLED")?.toLowerCase() === "true") return undefined;
  const fromEnv = TURN_ON_VARIABLES.some((name) => variable(env, name) !== undefined);
  if (!config && (!fromEnv || variable(env, "OTEL_TRACES_EXPORTER")?.toLowerCase() === "none"))
    return undefined;
  const warnings: string[] = [];

  const url = config?.endpoint
    ? tracesUrl(config.endpoint)
    : (variable(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ??
      tracesUrl(variable(env, "OTEL_EXPORTER_OTLP_ENDPOINT") ?? DEFAULT_BASE));
  // Refused here, before anything is loaded (and by `config check`): the exporter's own error
  // quotes the URL whole, userinfo and query included — where a collector's credential may sit.
  // Every endpoint variable set is checked, not only the one used: the exporter reads them all,
  // and warns with the URL of any it cannot parse.
  const given = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
    .map((name) => variable(env, name))
    .filter((v) => v !== undefined);
  if (!isHttpUrl(url) || given.some((v) => !isHttpUrl(v))) {
    throw new McpGateError(
      "ERR_CONFIG_INVALID",
      "tracing: the OTLP traces endpoint is not an http(s) URL " +
        "(check tracing.endpoint, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and OTEL_EXPORTER_OTLP_ENDPOINT)",
    );
  }

  let sampler: SamplerName = config?.sampler ?? "parentbased_always_on";
  if (!config?.sampler) {
    const named = variable(env, "OTEL_TRACES_SAMPLER")?.toLowerCase();
    if (named && (SAMPLERS as readonly string[]).includes(named)) sampler = named as SamplerName;
    else if (named)
      warnings.push(
        `OTEL_TRACES_SAMPLER=${JSON.stringify(named.slice(0, 64))} is not supported; using parentbased_always_on`,
      );
    else if (config?.sampleRatio !== undefined) sampler = "parentbased_traceidratio";
  }
  let ratio = config?.sampleRatio ?? 1;
  if (config?.sampleRatio === undefined) {
    const arg = variable(env, "OTEL_TRACES_SAMPLER_ARG");
    if (arg !== undefined) {
      const n = Number(arg);
      if (Number.isFinite(n) && n >= 0 && n <= 1) ratio = n;
      else warnings.push("OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1; using 1");
    }
  }

  let scheduleDelayMs = 5000;
  const delay = variable(env, "OTEL_BSP_SCHEDULE_DELAY");
  if (delay !== undefined) {
    const n = Number(delay);
    if (Number.isInteger(n) && n >= 0) scheduleDelayMs = n;
    else warnings.push("OTEL_BSP_SCHEDULE_DELAY must be a whole number of milliseconds; using 5000");
  }

  return {
    url,
    serviceName: config?.serviceName ?? variable(env, "OTEL_SERVICE_NAME") ?? "mcpgate",
    sampler,
    ratio,
    headers: { ...config?.headers },
    resourceAttributes: { ...config?.resourceAttributes },
    scheduleDelayMs,
    warnings,
  };
}

/** Whether `raw` is an http(s) URL (the OTLP/HTTP exporter's endpoint must be one). */
function isHttpUrl(raw: string): boolean {
  try {
    return /^https?:$/.test(new URL(raw).protocol);
  } catch {
    return false;
  }
}
