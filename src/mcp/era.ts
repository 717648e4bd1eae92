import type { InspectedMessage } from "./jsonrpc.js";

/** The 2026-07-28 revision is stateless: no sessions, per-request `_meta` version, Mcp-Method headers. */
export const STATELESS_VERSIONS: ReadonlySet<string> = new Set(["2026-07-28"]);
export const SESSION_VERSIONS: ReadonlySet<string> = new Set([
  "2024-11-05",
  "2025-03-26",
  "2025-06-18",
  "2025-11-25",
]);

export type Era = "2025" | "2026";

/**
 * Decide the era of one HTTP request (spec V-0728 "dual-era": a request carrying modern
 * per-request metadata is served statelessly; `initialize` selects legacy semantics).
 *
 * @example detectEra("2026-07-28", messages) // "2026"
 */
export function detectEra(protocolHeader: string | undefined, messages: readonly InspectedMessage[]): Era {
  if (protocolHeader && STATELESS_VERSIONS.has(protocolHeader)) return "2026";
  if (messages.some((m) => m.metaProtocolVersion && STATELESS_VERSIONS.has(m.metaProtocolVersion)))
    return "2026";
  return "2025";
}

/**
 * RFC 2047-style encoding used by 2026-07-28 Mcp-Name for values that are not header-safe:
 * `=?base64?<b64>?=`. Returns undefined when the encoded form is malformed.
 */
export function decodeMcpHeaderValue(value: string): string | undefined {
  const m = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/i.exec(value);
  if (!m) return value;
  try {
    return Buffer.from(m[1]!, "base64").toString("utf8");
  } catch {
    return undefined;
  }
}

/**
 * Check the 2026-07-28 request-metadata headers against the body (SH-0728 §"Server validation":
 * mismatch → 400 with -32020). Returns an error message, or undefined when they agree.
 * Headers are never trusted for decisions; this only refuses requests whose headers lie.
 */
export function checkMetadataHeaders(
  headers: { method?: string; name?: string; protocolVersion?: string },
  message: InspectedMessage | undefined,
  era: Era,
): string | undefined {
  if (!message || message.type === "response") return undefined;
  if (era === "2026") {
    if (headers.method === undefined) return "Mcp-Method header is required";
    if (
      message.metaProtocolVersion &&
      headers.protocolVersion &&
      message.metaProtocolVersion !== headers.protocolVersion
    ) {
      return "MCP-Protocol-Version header does not match _meta protocolVersion";
    }
  }
  if (headers.method !== undefined && headers.method !== message.method) {
    return "Mcp-Method header does not match the body";
  }
  const needsName = message.name !== undefined;
  if (headers.name !== undefined || (era === "2026" && needsName)) {
    if (headers.name === undefined) return "Mcp-Name header is required";
    const decoded = decodeMcpHeaderValue(headers.name);
    if (decoded === undefined || decoded !== message.name) return "Mcp-Name header does not match the body";
  }
  return undefined;
}
