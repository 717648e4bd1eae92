import { canonicalizeRequestNames } from "../authz/resource-uri.js";
import type { GateRequest } from "../core/contracts.js";
import type { Denial } from "../core/outcome.js";
import { checkMetadataHeaders, decideEra, type Era } from "../mcp/era.js";
import { type InspectedMessage, inspectParsedJsonRpc, parseJsonRpc } from "../mcp/jsonrpc.js";
import { header } from "./headers.js";

/**
 * Steps 4–5 of the pipeline, after authentication: what the request is. The body parsed as
 * JSON-RPC (POST only), the era decided from the headers and every message's `_meta`, the
 * 2026-07-28 request-metadata headers checked against the body, resource URIs put in the form the
 * upstream resolves them. Pure: no store, no observer.
 */

/** A request's messages and era, or why it is refused. */
export type RequestShape =
  | {
      ok: true;
      messages: InspectedMessage[];
      batch: boolean;
      body: unknown;
      era: Era;
      /** The 2025-era session the request names. */
      sessionId: string | undefined;
      initialize: boolean;
    }
  | { ok: false; denial: Denial };

/**
 * Inspect an authenticated request.
 *
 * @example const shape = inspectRequest(req, "POST"); if (!shape.ok) return deny(shape.denial);
 */
export function inspectRequest(req: GateRequest, method: string): RequestShape {
  const deny = (denial: Denial): RequestShape => ({ ok: false, denial });
  // 4. Body: JSON-RPC parse (POST only). After authentication, so that a caller without a valid
  // credential learns nothing but 401 (the body size limit is enforced earlier, by the adapter).
  let messages: InspectedMessage[] = [];
  let batch = false;
  let body: unknown;
  if (method === "POST") {
    const ct = header(req.headers, "content-type");
    if (ct !== undefined && !/^application\/json\b/i.test(ct.trim()))
      return deny({ kind: "unsupported_media_type" });
    let parsed: ReturnType<typeof parseJsonRpc>;
    if (req.parsedBody !== undefined && typeof req.parsedBody !== "string") {
      parsed = inspectParsedJsonRpc(req.parsedBody);
    } else {
      const text = typeof req.parsedBody === "string" ? req.parsedBody : (req.bodyText ?? "");
      parsed = parseJsonRpc(text);
    }
    if (!parsed.ok)
      return deny(
        parsed.kind === "parse_error"
          ? { kind: "parse_error", message: parsed.message }
          : { kind: "invalid_request", message: parsed.message },
      );
    messages = parsed.messages;
    batch = parsed.batch;
    body = parsed.value;
  }

  // 5. Era and request-metadata headers (2026-07-28: Mcp-Method / Mcp-Name must match the body).
  const protocolVersion = header(req.headers, "mcp-protocol-version");
  // One era decision from the header and every message's _meta: a 2026 marker with a session id,
  // or two eras mixed, is refused, so no adapter can hand on an unchecked Mcp-Session-Id.
  const eraDecision = decideEra({
    protocolHeader: protocolVersion,
    sessionId: header(req.headers, "mcp-session-id"),
    messages,
  });
  if (!eraDecision.ok) return deny({ kind: "invalid_request", message: eraDecision.message });
  const era = eraDecision.era;
  if (method === "POST" && !batch) {
    const mismatch = checkMetadataHeaders(
      { method: header(req.headers, "mcp-method"), name: header(req.headers, "mcp-name"), protocolVersion },
      messages[0],
      era,
    );
    if (mismatch) return deny({ kind: "header_mismatch", message: mismatch });
  }
  // Resource URIs in the form the upstream resolves them (WHATWG URL; docs/policy.md): the policy
  // matches that form and the upstream receives exactly it (the messages are rewritten in place;
  // every forwarded body is built from them). 2026-07-28 repeats the URI in Mcp-Name, so there a
  // non-canonical URI is refused (400, naming the canonical form) rather than rewritten.
  const canonical = canonicalizeRequestNames(messages, { rewrite: era === "2025" });
  if (!canonical.ok) return deny({ kind: "invalid_request", message: canonical.reason });

  const initialize = messages.some((m) => m.method === "initialize" && m.type === "request");
  const sessionId = eraDecision.era === "2025" ? eraDecision.sessionId : undefined;
  return { ok: true, messages, batch, body, era, sessionId, initialize };
}
