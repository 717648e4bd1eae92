import { type InspectedMessage, MAX_NAME_LENGTH, MAX_URI_LENGTH } from "../core/message.js";
import type { JsonRpcId } from "../core/outcome.js";

export type { InspectedMessage };

export type ParseResult =
  | { ok: true; messages: InspectedMessage[]; batch: boolean; value: unknown }
  | { ok: false; kind: "parse_error" | "invalid_request"; message: string };

/** Maximum nesting we accept before JSON.parse even runs; deeper bodies are refused, not parsed. */
export const MAX_JSON_DEPTH = 64;
/** Maximum messages in one 2025-03-26 batch. */
export const MAX_BATCH = 100;

const META_VERSION_KEY = "io.modelcontextprotocol/protocolVersion";

/**
 * Cheap pre-scan that refuses absurd nesting before JSON.parse allocates it (a deeply nested
 * array is a classic stack/CPU attack on naive inspectors).
 */
function depthExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
      continue;
    }
    if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

/** Longest string id accepted: ids are kept per pending request (wire-id maps), so they are bounded. */
export const MAX_ID_LENGTH = 256;

function isId(v: unknown): v is JsonRpcId {
  return (
    (typeof v === "string" && v.length <= MAX_ID_LENGTH) ||
    (typeof v === "number" && Number.isFinite(v)) ||
    v === null
  );
}

/** Validate one element against JSON-RPC 2.0 §4/§5 and pull out what authorization needs. */
export function inspectMessage(value: unknown): InspectedMessage | string {
  if (!value || typeof value !== "object" || Array.isArray(value)) return "message is not a JSON object";
  const msg = value as Record<string, unknown>;
  if (msg.jsonrpc !== "2.0") return 'message lacks "jsonrpc": "2.0"';
  const hasId = Object.hasOwn(msg, "id");
  if (hasId && !isId(msg.id))
    return `id must be a string (at most ${MAX_ID_LENGTH} characters), a number or null`;
  if (typeof msg.method === "string") {
    if (msg.method.length === 0 || msg.method.length > 256) return "method must be a non-empty string";
    if (msg.params !== undefined && (typeof msg.params !== "object" || msg.params === null)) {
      return "params must be an object or an array";
    }
    const params = (msg.params ?? {}) as Record<string, unknown>;
    const out: InspectedMessage = {
      type: hasId ? "request" : "notification",
      method: msg.method,
      raw: msg,
    };
    if (hasId) out.id = msg.id as JsonRpcId;
    if (msg.method === "tools/call" || msg.method === "prompts/get") {
      if (typeof params.name !== "string") return `${msg.method} requires a string params.name`;
      // Bounded before any matcher sees it (issue 14: a 240 KB name stalled a backtracking glob).
      if (params.name.length > MAX_NAME_LENGTH)
        return `params.name longer than ${MAX_NAME_LENGTH} characters`;
      out.name = params.name;
    } else if (
      msg.method === "resources/read" ||
      msg.method === "resources/subscribe" ||
      msg.method === "resources/unsubscribe"
    ) {
      if (typeof params.uri !== "string") return `${msg.method} requires a string params.uri`;
      if (params.uri.length > MAX_URI_LENGTH) return `params.uri longer than ${MAX_URI_LENGTH} characters`;
      out.name = params.uri;
    } else if (msg.method === "completion/complete") {
      const ref = params.ref as { name?: unknown; uri?: unknown } | undefined;
      if (typeof ref?.name === "string" && ref.name.length > MAX_NAME_LENGTH)
        return `params.ref.name longer than ${MAX_NAME_LENGTH} characters`;
      if (typeof ref?.uri === "string" && ref.uri.length > MAX_URI_LENGTH)
        return `params.ref.uri longer than ${MAX_URI_LENGTH} characters`;
    }
    const meta = params._meta;
    if (
      meta &&
      typeof meta === "object" &&
      typeof (meta as Record<string, unknown>)[META_VERSION_KEY] === "string"
    ) {
      out.metaProtocolVersion = (meta as Record<string, string>)[META_VERSION_KEY];
    }
    return out;
  }
  if (msg.method !== undefined) return "method must be a string";
  if (hasId && (Object.hasOwn(msg, "result") || Object.hasOwn(msg, "error"))) {
    return { type: "response", id: msg.id as JsonRpcId, raw: msg };
  }
  return "message is neither a request, a notification nor a response";
}

/**
 * Parse a POST body as JSON-RPC: one message or (2025-03-26) a batch array. Never throws.
 *
 * @example parseJsonRpc('{"jsonrpc":"2.0","id":1,"method":"ping"}') // { ok: true, messages: [...] }
 */
export function parseJsonRpc(text: string): ParseResult {
  if (depthExceeds(text, MAX_JSON_DEPTH)) {
    return { ok: false, kind: "parse_error", message: "Parse error: JSON nested too deeply" };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, kind: "parse_error", message: "Parse error: body is not valid JSON" };
  }
  return inspectJsonRpc(value);
}

/**
 * Inspect a body some earlier middleware already parsed (e.g. `express.json()`): the same checks as
 * {@link parseJsonRpc} without serialising and parsing it again. Never throws.
 *
 * @example inspectParsedJsonRpc({ jsonrpc: "2.0", id: 1, method: "ping" }).ok // true
 */
export function inspectParsedJsonRpc(value: unknown): ParseResult {
  if (valueDepthExceeds(value, MAX_JSON_DEPTH)) {
    return { ok: false, kind: "parse_error", message: "Parse error: JSON nested too deeply" };
  }
  return inspectJsonRpc(value);
}

/** Depth of an object graph, walked with an explicit stack (a deep value must not overflow ours). */
function valueDepthExceeds(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (!v || typeof v !== "object") continue;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

function inspectJsonRpc(value: unknown): ParseResult {
  const batch = Array.isArray(value);
  const items = batch ? (value as unknown[]) : [value];
  if (batch && items.length === 0) return { ok: false, kind: "invalid_request", message: "empty batch" };
  if (items.length > MAX_BATCH)
    return { ok: false, kind: "invalid_request", message: `batch over ${MAX_BATCH} messages` };
  const messages: InspectedMessage[] = [];
  for (const item of items) {
    const m = inspectMessage(item);
    if (typeof m === "string") return { ok: false, kind: "invalid_request", message: m };
    messages.push(m);
  }
  return { ok: true, messages, batch, value };
}
