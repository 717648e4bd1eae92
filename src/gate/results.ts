import { JSONRPC } from "../core/challenge.js";
import type { JsonRpcId } from "../core/outcome.js";
import type { Era } from "../mcp/era.js";

/** JSON-RPC result for a tool call the policy refused (DESIGN.md §2: API-key identity → isError). */
export function toolErrorResult(id: JsonRpcId, text: string, era: Era = "2025"): Record<string, unknown> {
  const result: Record<string, unknown> = { content: [{ type: "text", text }], isError: true };
  // 2026-07-28 results carry resultType.
  if (era === "2026") result.resultType = "complete";
  return { jsonrpc: "2.0", id, result };
}

/** JSON-RPC error for a refused non-tool message (resources/read, prompts/get, …) in a batch. */
export function forbiddenError(id: JsonRpcId, message: string): Record<string, unknown> {
  return { jsonrpc: "2.0", id, error: { code: JSONRPC.FORBIDDEN, message } };
}

/** RFC 9728 §3.1: the metadata URL inserts the well-known path before the resource's path. */
export function protectedResourceMetadataUrl(resource: URL): string {
  const path = resource.pathname === "/" ? "" : resource.pathname.replace(/\/$/, "");
  return `${resource.origin}/.well-known/oauth-protected-resource${path}`;
}

/** Session ids are bearer-like handles: log only a short prefix. */
export function redactSessionId(id: string): string {
  return id.length > 8 ? `${id.slice(0, 8)}…` : id;
}
