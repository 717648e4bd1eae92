import { refusedMessageAnswer } from "../core/challenge.js";
import type { JsonRpcId } from "../core/outcome.js";
import type { Era } from "../mcp/era.js";

/** JSON-RPC result for a tool call the policy refused (DESIGN.md §2: API-key identity → isError). */
export function toolErrorResult(id: JsonRpcId, text: string, era: Era = "2025"): Record<string, unknown> {
  return refusedMessageAnswer(id, "tools/call", text, era === "2026" ? "complete" : undefined);
}

/** JSON-RPC error for a refused non-tool message (resources/read, prompts/get, …) in a batch. */
export function forbiddenError(id: JsonRpcId, message: string): Record<string, unknown> {
  return refusedMessageAnswer(id, undefined, message);
}

/** RFC 9728 §3.1: the metadata URL inserts the well-known path before the resource's path. */
export function protectedResourceMetadataUrl(resource: URL): string {
  const path = resource.pathname === "/" ? "" : resource.pathname.replace(/\/$/, "");
  return `${resource.origin}/.well-known/oauth-protected-resource${path}`;
}

export { redactSessionId } from "../core/identity.js";
