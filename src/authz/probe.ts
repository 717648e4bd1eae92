/**
 * The probe role: a read-only monitoring credential (an API key created with `--probe`) may open a
 * session, ping, discover the server and list its tools, resources and prompts — enough for a
 * monitor to check liveness and detect schema drift — and nothing else. Everything else is refused
 * by the gate (`probe_denied`) and never forwarded upstream.
 */
export const PROBE_ALLOWED_METHODS: ReadonlySet<string> = new Set([
  "initialize",
  "notifications/initialized",
  "ping",
  "server/discover",
  "tools/list",
  "resources/list",
  "prompts/list",
]);

/**
 * True when a probe credential may send a JSON-RPC message with this method. An exact match: no
 * prefixes, no case folding (JSON-RPC method names are case-sensitive).
 *
 * @example isProbeAllowedMethod("tools/list") // true
 * @example isProbeAllowedMethod("tools/call") // false
 */
export function isProbeAllowedMethod(method: unknown): boolean {
  return typeof method === "string" && PROBE_ALLOWED_METHODS.has(method);
}
