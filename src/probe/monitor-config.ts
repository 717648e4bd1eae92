import { z } from "zod";
import { readConfigFile } from "../core/config-file.js";
import { parseDuration } from "../core/duration.js";
import { interpolateEnv } from "../core/env-interpolation.js";
import { McpGateError } from "../core/errors.js";

/**
 * The `mcpgate monitor` configuration file (docs/monitoring.md). Its own schema: the monitor runs
 * apart from the gateway, usually on another machine.
 */

const duration = z.union([z.string(), z.number()]).refine(
  (v) => {
    try {
      return parseDuration(v) > 0;
    } catch {
      return false;
    }
  },
  { message: "invalid duration: use e.g. 500ms, 10s, 30m, 24h" },
);

const targetSchema = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]*$/, "letters, digits, space, dot, dash, underscore"),
  url: z
    .string()
    .url()
    .refine((u) => /^https?:/i.test(u), "must be http or https"),
  /** Environment variable holding this target's probe key (keys stay out of files). */
  keyEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .optional(),
  interval: duration.default("60s"),
  timeout: duration.default("10s"),
  headers: z.record(z.string(), z.string()).optional(),
});

const listenSchema = z.union([
  z.string().regex(/^[^:]+:\d{1,5}$/, 'use "host:port"'),
  z.strictObject({
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(9470),
  }),
]);

export const monitorConfigSchema = z.strictObject({
  targets: z.array(targetSchema).min(1),
  listen: listenSchema.default({ host: "127.0.0.1", port: 9470 }),
  history: z
    .string()
    .refine(
      (h) => h.startsWith("sqlite:") || h === "memory:" || /^postgres(ql)?:\/\//.test(h),
      'use "sqlite:PATH", "postgres://…" or "memory:"',
    )
    .default("sqlite:./mcpgate-monitor.db"),
  alerts: z
    .strictObject({
      webhook: z.string().url().optional(),
      secret: z.string().min(16, "use at least 16 characters").optional(),
      certExpiryDays: z.number().int().min(0).default(14),
    })
    .default({ certExpiryDays: 14 }),
});

export type MonitorConfigInput = z.input<typeof monitorConfigSchema>;

/** One target, resolved: durations in ms, key read from its environment variable. */
export interface MonitorTarget {
  readonly name: string;
  readonly url: string;
  readonly key?: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly headers: Readonly<Record<string, string>>;
}

/** The resolved monitor configuration (frozen). */
export interface MonitorConfig {
  readonly targets: readonly MonitorTarget[];
  readonly listen: { readonly host: string; readonly port: number };
  readonly history: string;
  readonly alerts: { readonly webhook?: string; readonly secret?: string; readonly certExpiryDays: number };
}

/**
 * Validate a parsed monitor configuration; `${VAR}` in strings is read from `env`, and each target's
 * `keyEnv` must name a set variable. Throws ERR_CONFIG_INVALID naming the field.
 *
 * @example
 * const cfg = resolveMonitorConfig({ targets: [{ name: "prod", url: "https://mcp.example.com/mcp", keyEnv: "PROBE_KEY" }] });
 */
export function resolveMonitorConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env): MonitorConfig {
  const parsed = monitorConfigSchema.safeParse(interpolateEnv(raw ?? {}, env));
  if (!parsed.success) {
    const lines = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new McpGateError("ERR_CONFIG_INVALID", `invalid monitor configuration: ${lines.join("; ")}`);
  }
  const c = parsed.data;
  const names = new Set<string>();
  const targets = c.targets.map((t, i): MonitorTarget => {
    if (names.has(t.name))
      throw new McpGateError("ERR_CONFIG_INVALID", `targets[${i}].name: "${t.name}" is used twice`);
    names.add(t.name);
    let key: string | undefined;
    if (t.keyEnv) {
      key = env[t.keyEnv];
      if (!key)
        throw new McpGateError(
          "ERR_CONFIG_INVALID",
          `targets[${i}].keyEnv: environment variable ${t.keyEnv} is not set`,
        );
    }
    const target: MonitorTarget = {
      name: t.name,
      url: t.url,
      intervalMs: parseDuration(t.interval),
      timeoutMs: parseDuration(t.timeout),
      headers: Object.freeze({ ...(t.headers ?? {}) }),
      ...(key ? { key } : {}),
    };
    return Object.freeze(target);
  });
  if (c.alerts.webhook && !c.alerts.secret) {
    throw new McpGateError(
      "ERR_CONFIG_INVALID",
      "alerts.secret: required with alerts.webhook (alerts are signed)",
    );
  }
  const listen = typeof c.listen === "string" ? splitHostPort(c.listen) : c.listen;
  return Object.freeze({
    targets: Object.freeze(targets),
    listen: Object.freeze(listen),
    history: c.history,
    alerts: Object.freeze({ ...c.alerts }),
  });
}

/**
 * Read a YAML (.yaml/.yml) or JSON (.json) monitor configuration file and resolve it.
 *
 * @example const cfg = loadMonitorConfig("./monitor.yaml");
 */
export function loadMonitorConfig(file: string, env: NodeJS.ProcessEnv = process.env): MonitorConfig {
  return resolveMonitorConfig(readConfigFile(file, "monitor config"), env);
}

function splitHostPort(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(":");
  return { host: value.slice(0, i), port: Number(value.slice(i + 1)) };
}
