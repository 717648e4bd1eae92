/**
 * `mcpgate/probe`: check an authenticated MCP endpoint (one probe) and monitor several on a schedule.
 *
 * @example
 * import { probeEndpoint } from "mcpgate/probe";
 * const r = await probeEndpoint("https://mcp.example.com/mcp", { key: process.env.MCPGATE_PROBE_KEY });
 */
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
