import { McpGateError } from "./errors.js";

/** Deepest nesting a configuration may have; real ones need a handful of levels. */
const MAX_DEPTH = 32;

/**
 * Replace `${VAR}` in every string of a parsed configuration with the environment's value
 * (DESIGN.md §7: secrets stay out of files). An unset variable is an ERR_CONFIG_INVALID error
 * naming the field and the variable, never a value. YAML aliases can make a value contain itself
 * (`a: &a [*a]`) and a file can nest absurdly deep: both are refused with ERR_CONFIG_INVALID
 * rather than overflowing the stack. Shared by the gateway and the monitor configuration.
 *
 * @example
 * interpolateEnv({ upstream: { headers: { Authorization: "Bearer ${TOKEN}" } } }, { TOKEN: "t" });
 * // { upstream: { headers: { Authorization: "Bearer t" } } }
 */
export function interpolateEnv(
  value: unknown,
  env: NodeJS.ProcessEnv,
  path = "",
  ancestors: object[] = [],
): unknown {
  if (value && typeof value === "object") {
    if (ancestors.includes(value)) {
      throw new McpGateError(
        "ERR_CONFIG_INVALID",
        `${path || "config"}: a value contains itself (YAML alias cycle)`,
      );
    }
    if (ancestors.length >= MAX_DEPTH) {
      throw new McpGateError(
        "ERR_CONFIG_INVALID",
        `${path || "config"}: nested more than ${MAX_DEPTH} levels`,
      );
    }
    const inner = [...ancestors, value];
    if (Array.isArray(value)) return value.map((v, i) => interpolateEnv(v, env, `${path}[${i}]`, inner));
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolateEnv(v, env, path ? `${path}.${k}` : k, inner)]),
    );
  }
  if (typeof value === "string") {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const v = env[name];
      if (v === undefined) {
        throw new McpGateError(
          "ERR_CONFIG_INVALID",
          `${path || "config"}: environment variable ${name} is not set`,
        );
      }
      return v;
    });
  }
  return value;
}
