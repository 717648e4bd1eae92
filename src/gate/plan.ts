import type { InspectedMessage } from "../core/message.js";
import type { Era } from "../mcp/era.js";
import type { VisibilityPredicate } from "../mcp/list-filter.js";

/**
 * What happens after the gate said yes, decided once at admission and never changed after
 * (frozen): which messages go upstream, what the gate answers itself, which answers are filtered
 * and how, and whether a session is to be bound. One response owner (http/response-owner.ts)
 * follows it for every upstream kind and for in-process SDK servers alike.
 */
export interface ResponsePlan {
  /**
   * How the request is answered: `forward` — the `forward` messages go upstream (plus the local
   * answers merged in); `local` — every request was answered by the gate (200, `localResponses`);
   * `accepted` — only notifications or responses remained and none may go on (202, no body).
   */
  readonly answer: "forward" | "local" | "accepted";
  /** The messages to send upstream, in the client's order (denied batch elements removed). */
  readonly forward: readonly InspectedMessage[];
  /** True when `forward` is the client's whole body (nothing was taken out). */
  readonly forwardIsWhole: boolean;
  /** Answers the gate produced itself (denied batch elements), merged into the response. */
  readonly localResponses: readonly Record<string, unknown>[];
  /** Set when list answers must be filtered for this caller — on every stream they arrive on. */
  readonly visible?: VisibilityPredicate;
  /** The response head may mint a session to bind to the caller (`initialize`). */
  readonly bindSession: boolean;
  /** The upstream's answer carries messages for the client: a GET stream, or a forwarded request. */
  readonly expectsAnswers: boolean;
  readonly era: Era;
}

/** Build a frozen plan. */
export function freezePlan(plan: ResponsePlan): ResponsePlan {
  Object.freeze(plan.forward);
  Object.freeze(plan.localResponses);
  return Object.freeze(plan);
}

/** The plan of a request that carries no messages (a GET stream, a DELETE). */
export function bodylessPlan(era: Era, stream: boolean, visible?: VisibilityPredicate): ResponsePlan {
  return freezePlan({
    answer: "forward",
    forward: [],
    forwardIsWhole: true,
    localResponses: [],
    bindSession: false,
    expectsAnswers: stream,
    era,
    ...(visible ? { visible } : {}),
  });
}
