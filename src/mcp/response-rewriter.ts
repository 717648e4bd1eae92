import type { Era } from "./era.js";
import { filterListResponse, listMethodFor, type VisibilityPredicate } from "./list-filter.js";
import { formatSseEvent, SseParser } from "./sse.js";

/** What a rewriter needs to know about the request whose response it rewrites. */
export interface RewritePlan {
  /** JSON-stringified request id → list method, for list requests to filter. */
  listIds: Map<string, string>;
  visible?: VisibilityPredicate;
  era: Era;
  /** Responses the gate produced itself (denied batch elements), merged into the answer. */
  localResponses: Array<Record<string, unknown>>;
}

/** True when the response must be rewritten rather than piped through untouched. */
export function needsRewrite(plan: RewritePlan): boolean {
  return (plan.visible !== undefined && plan.listIds.size > 0) || plan.localResponses.length > 0;
}

function rewriteMessage(msg: unknown, plan: RewritePlan): unknown {
  if (!plan.visible || !msg || typeof msg !== "object" || Array.isArray(msg)) return msg;
  const m = msg as Record<string, unknown>;
  if (!Object.hasOwn(m, "result")) return msg;
  const method = listMethodFor(plan.listIds, m.id);
  return method ? filterListResponse(m, method, plan.visible, plan.era) : msg;
}

/**
 * Rewrite a complete JSON response body. Unparseable bodies are returned unchanged only when there
 * is nothing to filter; when a filter applies they are refused (fail closed: an unfiltered list
 * must never reach a caller).
 */
export function rewriteJsonBody(text: string, plan: RewritePlan): { ok: true; body: string } | { ok: false } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false };
  }
  if (Array.isArray(value)) {
    const out = value.map((v) => rewriteMessage(v, plan));
    return { ok: true, body: JSON.stringify([...out, ...plan.localResponses]) };
  }
  const out = rewriteMessage(value, plan);
  if (plan.localResponses.length > 0)
    return { ok: true, body: JSON.stringify([out, ...plan.localResponses]) };
  return { ok: true, body: out === value ? text : JSON.stringify(out) };
}

/**
 * An incremental SSE rewriter: feed upstream chunks, get text to send. Events whose data is a list
 * response are filtered; every other event passes byte-for-byte. Local responses are emitted first.
 */
export function createSseRewriter(plan: RewritePlan): {
  push(chunk: string | Uint8Array): string;
  end(): string;
} {
  const parser = new SseParser();
  // Bytes may arrive even when the stream was asked for text (undici's body iterator yields
  // Buffers); a streaming decoder keeps a multi-byte character split across chunks intact.
  const decoder = new TextDecoder("utf-8");
  let prefix = plan.localResponses.map((r) => formatSseEvent(JSON.stringify(r))).join("");
  return {
    push(chunk: string | Uint8Array): string {
      let out = prefix;
      prefix = "";
      const text = typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
      for (const ev of parser.push(text)) {
        if (ev.data === undefined || !plan.visible || plan.listIds.size === 0) {
          out += ev.raw;
          continue;
        }
        let value: unknown;
        try {
          value = JSON.parse(ev.data);
        } catch {
          out += ev.raw;
          continue;
        }
        const next = Array.isArray(value)
          ? value.map((v) => rewriteMessage(v, plan))
          : rewriteMessage(value, plan);
        const changed = Array.isArray(value)
          ? (next as unknown[]).some((v, i) => v !== value[i])
          : next !== value;
        out += changed
          ? formatSseEvent(JSON.stringify(next), {
              ...(ev.id !== undefined ? { id: ev.id } : {}),
              ...(ev.event !== undefined ? { event: ev.event } : {}),
            })
          : ev.raw;
      }
      return out;
    },
    end(): string {
      // WHATWG HTML §9.2.6: an event not ended by a blank line at end of stream is discarded by the
      // client. Drop it here too: terminating it would dispatch a truncated message (the upstream
      // died mid-event), and while filtering it could hold an unfiltered list.
      parser.flush();
      return prefix;
    },
  };
}
