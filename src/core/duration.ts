import { McpGateError } from "./errors.js";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parse "500ms", "10s", "30m", "24h", "90d" (or a plain number of milliseconds) to milliseconds.
 *
 * @example parseDuration("30m") // 1_800_000
 */
export function parseDuration(value: string | number): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) throw badDuration(String(value));
    return value;
  }
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (!m) throw badDuration(value);
  const ms = Number(m[1]) * (UNIT_MS[m[2]!] ?? Number.NaN);
  if (!Number.isFinite(ms)) throw badDuration(value);
  return Math.round(ms);
}

function badDuration(value: string): McpGateError {
  const shown = value.length > 20 ? `${value.slice(0, 20)}…` : value;
  return new McpGateError(
    "ERR_INVALID_DURATION",
    `invalid duration "${shown}": use a number with a unit, e.g. 500ms, 10s, 30m, 24h, 90d`,
  );
}
