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
 * Decide the era of one HTTP request (spec V-0728 "dual-era"; prefer {@link decideEra}, which also
 * refuses mixed eras and a 2026 marker with a session id: a request carrying modern
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

/** One decision for a whole request: its era, and the session id the gate must check (2025 only). */
export type EraDecision = { ok: true; era: Era; sessionId?: string } | { ok: false; message: string };

/** The era a protocol version names, if it is one we know. */
function eraOf(version: string | undefined): Era | undefined {
  if (version === undefined) return undefined;
  if (STATELESS_VERSIONS.has(version)) return "2026";
  if (SESSION_VERSIONS.has(version)) return "2025";
  return undefined;
}

/**
 * Decide the era of one HTTP request once, from the `MCP-Protocol-Version` header and the
 * `_meta["io.modelcontextprotocol/protocolVersion"]` of every message together (issue 14 item 8),
 * so that no part of the pipeline can see a different era than another. Refused (400):
 *
 * - markers that disagree: a 2026 header with a message marked 2025 (or the reverse), or a batch
 *   in which some requests/notifications carry the 2026 marker and others do not (2026-07-28 has
 *   no batches; such a body is built to be read two ways);
 * - a 2026 marker together with an `Mcp-Session-Id`: 2026-07-28 has no sessions, and a session id
 *   the gate does not check must never reach the upstream or the app (the library middleware
 *   would otherwise hand it to the app's transport, which routes the call into that session).
 *
 * Otherwise the era is 2026 when anything marks it, else 2025 with its session id, which the gate
 * then checks against the caller.
 *
 * @example decideEra({ protocolHeader: "2026-07-28", messages }) // { ok: true, era: "2026" }
 */
export function decideEra(input: {
  protocolHeader?: string | undefined;
  sessionId?: string | undefined;
  messages: readonly InspectedMessage[];
}): EraDecision {
  const header = eraOf(input.protocolHeader);
  let marked2026 = 0;
  let marked2025 = 0;
  let unmarked = 0;
  for (const m of input.messages) {
    if (m.type === "response") continue;
    const e = eraOf(m.metaProtocolVersion);
    if (e === "2026") marked2026++;
    else if (e === "2025") marked2025++;
    else unmarked++;
  }
  const is2026 = header === "2026" || marked2026 > 0;
  if (is2026) {
    if (header === "2025" || marked2025 > 0) {
      return { ok: false, message: "the request mixes protocol versions of two eras" };
    }
    if (marked2026 > 0 && unmarked > 0) {
      return { ok: false, message: "some messages carry the 2026-07-28 protocol version and others do not" };
    }
    if (input.sessionId !== undefined) {
      return { ok: false, message: "Mcp-Session-Id cannot be used with protocol version 2026-07-28" };
    }
    return { ok: true, era: "2026" };
  }
  return { ok: true, era: "2025", ...(input.sessionId !== undefined ? { sessionId: input.sessionId } : {}) };
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
