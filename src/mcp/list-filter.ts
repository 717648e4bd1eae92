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
  const specs = method === ANY_LIST ? Object.values(LISTS) : LISTS[method] ? [LISTS[method]] : [];
  const result = message.result as Record<string, unknown> | undefined;
  if (specs.length === 0 || !result || typeof result !== "object" || Array.isArray(result)) return message;
  let next: Record<string, unknown> | undefined;
  for (const spec of specs) {
    const items = result[spec.field];
    if (!Array.isArray(items)) continue;
    const kept = items.filter((item) => {
      const name = item && typeof item === "object" ? (item as Record<string, unknown>)[spec.key] : undefined;
      // An item we cannot name is an item we cannot authorize: drop it (fail closed).
      return typeof name === "string" && visible(spec.kind, name);
    });
    if (kept.length === items.length && !(era === "2026" && result.cacheScope === "public")) continue;
    next ??= { ...result };
    next[spec.field] = kept;
    if (era === "2026") next.cacheScope = "private";
  }
  return next ? { ...message, result: next } : message;
}

/**
 * Method marker meaning "this response may answer any list request": used when two list requests
 * of one batch share an id, and for GET streams (a resumed stream may replay a list response whose
 * request this HTTP request does not carry). Every list field present in the result is filtered.
 */
export const ANY_LIST = "*";

/**
 * Map request id (JSON-stringified) → list method for the list requests in one HTTP request. Two
 * requests sharing an id map to {@link ANY_LIST}, so neither response can slip through unfiltered.
 * `anyResponse` (GET streams) adds the {@link ANY_LIST} key: every response is treated as a list.
 */
export function listRequestIds(
  messages: ReadonlyArray<{ id?: JsonRpcId; method?: string; type: string }>,
  anyResponse = false,
): Map<string, string> {
  const ids = new Map<string, string>();
  const seen = new Set<string>();
  for (const m of messages) {
    if (m.type !== "request") continue;
    const key = JSON.stringify(m.id ?? null);
    const dup = seen.has(key);
    seen.add(key);
    if (isListMethod(m.method)) ids.set(key, dup || ids.has(key) ? ANY_LIST : m.method!);
    else if (ids.has(key)) ids.set(key, ANY_LIST);
  }
  if (anyResponse) ids.set(ANY_LIST, ANY_LIST);
  return ids;
}

/** The list method a response answers, per {@link listRequestIds}; undefined when it is not a list. */
export function listMethodFor(ids: ReadonlyMap<string, string>, id: unknown): string | undefined {
  return ids.get(JSON.stringify(id ?? null)) ?? ids.get(ANY_LIST);
}
