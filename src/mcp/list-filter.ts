import type { JsonRpcId } from "../core/outcome.js";
import type { Era } from "./era.js";

export type ListKind = "tools" | "resources" | "prompts";
export type VisibilityPredicate = (kind: ListKind, name: string) => boolean;

/** The list methods whose results are filtered per caller, and where the name of each item is. */
const LISTS: Record<string, { kind: ListKind; field: string; key: string }> = {
  "tools/list": { kind: "tools", field: "tools", key: "name" },
  "prompts/list": { kind: "prompts", field: "prompts", key: "name" },
  "resources/list": { kind: "resources", field: "resources", key: "uri" },
  "resources/templates/list": { kind: "resources", field: "resourceTemplates", key: "uriTemplate" },
};

/** True for methods whose results {@link filterListResponse} rewrites. */
export function isListMethod(method: string | undefined): boolean {
  return method !== undefined && Object.hasOwn(LISTS, method);
}

/**
 * Drop the items a caller may not see from one JSON-RPC response to a list request. Returns the
 * message unchanged (same object) when nothing was dropped. A filtered 2026-era result is marked
 * `cacheScope: "private"` (spec CA-0728: per-caller results must not be shared).
 *
 * @example filterListResponse(msg, "tools/list", (k, n) => n !== "delete_note", "2025")
 */
export function filterListResponse(
  message: Record<string, unknown>,
  method: string,
  visible: VisibilityPredicate,
  era: Era,
): Record<string, unknown> {
  const spec = LISTS[method];
  const result = message.result as Record<string, unknown> | undefined;
  if (!spec || !result || typeof result !== "object") return message;
  const items = result[spec.field];
  if (!Array.isArray(items)) return message;
  const kept = items.filter((item) => {
    const name = item && typeof item === "object" ? (item as Record<string, unknown>)[spec.key] : undefined;
    // An item we cannot name is an item we cannot authorize: drop it (fail closed).
    return typeof name === "string" && visible(spec.kind, name);
  });
  if (kept.length === items.length && !(era === "2026" && result.cacheScope === "public")) return message;
  const next: Record<string, unknown> = { ...result, [spec.field]: kept };
  if (era === "2026") next.cacheScope = "private";
  return { ...message, result: next };
}

/** Map request id → list method for the list requests in one HTTP request. */
export function listRequestIds(
  messages: ReadonlyArray<{ id?: JsonRpcId; method?: string; type: string }>,
): Map<string, string> {
  const ids = new Map<string, string>();
  for (const m of messages) {
    if (m.type === "request" && isListMethod(m.method)) ids.set(JSON.stringify(m.id ?? null), m.method!);
  }
  return ids;
}
