import type { Authorizer } from "../core/contracts.js";
import type { InspectedMessage } from "../core/message.js";
import type { Denial } from "../core/outcome.js";
import type { Admission } from "./admission.js";
import { forbiddenError, toolErrorResult } from "./results.js";

/**
 * Authorize every message of an admitted request (DESIGN.md §2 "authorize each message").
 * Returns the refusal for the whole request, or undefined; in a batch answered message by message,
 * denied elements become `admission.localResponses` and the rest `admission.forwardBody`.
 * `report` is told about each denied message (audit, metrics). Sets `admission.listFilter`.
 *
 * @example const denial = authorizeAdmission(policy, admission, (m, why) => log(m.method, why));
 */
export function authorizeAdmission(
  authz: Authorizer,
  admission: Admission,
  report: (message: InspectedMessage, reason: string) => void,
): Denial | undefined {
  const { identity, messages, batch, era } = admission;
  const denied: Array<{ m: InspectedMessage; scopes: string[]; reason: string }> = [];
  for (const m of messages) {
    if (m.type === "response") continue;
    const d = authz.authorize(identity, m);
    if (!d.allow) denied.push({ m, scopes: d.scopes, reason: d.reason });
  }
  if (authz.filtersLists(identity)) {
    admission.listFilter = (kind, name) => authz.isVisible(identity, kind, name);
  }
  if (denied.length === 0) return undefined;
  for (const d of denied) report(d.m, d.reason);
  if (authz.onDenied(identity) === "step-up") {
    return { kind: "insufficient_scope", scopes: [...new Set(denied.flatMap((d) => d.scopes))] };
  }
  if (!batch) {
    const d = denied[0]!;
    return {
      kind: "tool_denied",
      id: d.m.id ?? null,
      message: d.reason,
      ...(d.m.method !== "tools/call" ? { asError: true } : {}),
      ...(era === "2026" ? { resultType: "complete" as const } : {}),
    };
  }
  const deniedSet = new Set(denied.map((d) => d.m));
  for (const d of denied) {
    if (d.m.type !== "request") continue;
    admission.localResponses.push(
      d.m.method === "tools/call"
        ? toolErrorResult(d.m.id ?? null, d.reason, era)
        : forbiddenError(d.m.id ?? null, d.reason),
    );
  }
  const remaining = messages.filter((m) => !deniedSet.has(m));
  admission.messages = remaining;
  admission.forwardBody = remaining.length ? JSON.stringify(remaining.map((m) => m.raw)) : "";
  return undefined;
}
