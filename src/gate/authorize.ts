import type { Authorizer } from "../core/contracts.js";
import type { Identity } from "../core/identity.js";
import type { InspectedMessage } from "../core/message.js";
import type { Denial } from "../core/outcome.js";
import type { Era } from "../mcp/era.js";
import type { VisibilityPredicate } from "../mcp/list-filter.js";
import { forbiddenError, toolErrorResult } from "./results.js";

/** The authorizer's verdict on a whole request. */
export interface AuthorizeResult {
  /** A refusal of the whole request (step-up, or the single message of a non-batch request). */
  denial?: Denial;
  /** The messages that may go on (all of them unless batch elements were refused). */
  allowed: readonly InspectedMessage[];
  /** Answers for refused batch requests (refused notifications get none: JSON-RPC §4.1). */
  localResponses: Array<Record<string, unknown>>;
  /** Set when list results must be filtered for this caller. */
  visible?: VisibilityPredicate;
  /** True when the only message was a notification the policy refused: answer 202, forward nothing. */
  refusedNotification: boolean;
}

/**
 * Authorize every message of a request (DESIGN.md §2 "authorize each message"). Pure: returns
 * the verdict; nothing is mutated. `report` is told about each denied message (audit, metrics).
 *
 * @example const r = authorizeMessages(policy, { identity, messages, batch, era }, (m, why) => log(m.method, why));
 */
export function authorizeMessages(
  authz: Authorizer,
  req: { identity: Identity; messages: readonly InspectedMessage[]; batch: boolean; era: Era },
  report: (message: InspectedMessage, reason: string) => void,
): AuthorizeResult {
  const { identity, messages, batch, era } = req;
  const denied: Array<{ m: InspectedMessage; scopes: string[]; reason: string }> = [];
  for (const m of messages) {
    if (m.type === "response") continue;
    const d = authz.authorize(identity, m);
    if (!d.allow) denied.push({ m, scopes: d.scopes, reason: d.reason });
  }
  const visible = authz.filtersLists(identity)
    ? (kind: "tools" | "resources" | "prompts", name: string) => authz.isVisible(identity, kind, name)
    : undefined;
  const base = { ...(visible ? { visible } : {}), refusedNotification: false };
  if (denied.length === 0) return { ...base, allowed: messages, localResponses: [] };
  for (const d of denied) report(d.m, d.reason);
  const stepUpScopes = [...new Set(denied.flatMap((d) => d.scopes))];
  if (authz.onDenied(identity) === "step-up" && stepUpScopes.length > 0) {
    return {
      ...base,
      denial: { kind: "insufficient_scope", scopes: stepUpScopes },
      allowed: [],
      localResponses: [],
    };
  }
  if (!batch) {
    const d = denied[0]!;
    // A notification has no id to answer (JSON-RPC §4.1): a refused one is accepted and dropped.
    if (d.m.type === "notification")
      return { ...base, allowed: [], localResponses: [], refusedNotification: true };
    return {
      ...base,
      allowed: [],
      localResponses: [],
      denial: {
        kind: "tool_denied",
        id: d.m.id ?? null,
        message: d.reason,
        ...(d.m.method !== "tools/call" ? { asError: true } : {}),
        ...(era === "2026" ? { resultType: "complete" as const } : {}),
      },
    };
  }
  const deniedSet = new Set(denied.map((d) => d.m));
  const localResponses: Array<Record<string, unknown>> = [];
  for (const d of denied) {
    if (d.m.type !== "request") continue;
    localResponses.push(
      d.m.method === "tools/call"
        ? toolErrorResult(d.m.id ?? null, d.reason, era)
        : forbiddenError(d.m.id ?? null, d.reason),
    );
  }
  return { ...base, allowed: messages.filter((m) => !deniedSet.has(m)), localResponses };
}
