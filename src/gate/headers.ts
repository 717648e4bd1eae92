import type { GateRequest } from "../core/contracts.js";

/** A request header's value (the first, when repeated). */
export function header(headers: GateRequest["headers"], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}
