import { createHash } from "node:crypto";
import type { InspectedMessage } from "../core/message.js";
import type { JsonRpcId } from "../core/outcome.js";
import type { Era } from "./era.js";
import { ANY_LIST, filterListResponse, isListMethod, type VisibilityPredicate } from "./list-filter.js";

interface Pending {
  clientId: JsonRpcId;
  /** The list method to filter the answer by, when the request was a list. */
  list?: string;
}

/**
 * Request ids on the wire to an upstream, unique within one session (or one stateless request):
 * every request the gateway forwards gets an id of its own (`<prefix><n>`, a string) and the answer
 * gets the client's id back. An upstream can then never hand one request's answer to another
 * request of the same session — two concurrent POSTs may carry the same client id (issue 13) —
 * and an answer is filtered by what its own request was, on whichever stream it arrives (POST
 * JSON, POST SSE, the GET stream, resumption replays). An answer whose id the gateway never issued
 * is dropped: it cannot be attributed, so it cannot be filtered.
 *
 * A session's wire ids also carry what their answer needs, so that any gateway instance can map
 * it back — a resumption (Last-Event-ID) may reach another instance than the one that forwarded
 * the request, or the same one after it delivered the answer once and the client lost it:
 * `<prefix><n>.<session tag>.<base64url of the client's id as JSON>`. The session tag (a digest of
 * the session id) keeps an answer issued in one session from being read in another. Such an answer
 * is filtered as any list (ANY_LIST): the id is the upstream's to change, so it is not trusted to
 * say which answers need no filter. Nothing here is secret: the upstream is told the client's own
 * id, which it would otherwise have seen.
 *
 * @example
 * const ids = new WireIds("mcpgate-1f2e3d4c-");
 * const out = ids.outbound(admitted);            // send `out` upstream
 * const back = ids.inbound(answer, visible, era); // undefined: drop it
 */
export class WireIds {
  readonly #prefix: string;
  readonly #max: number;
  #seq = 0;
  /** Wire id → the request it was issued for (insertion order: oldest evicted first). */
  readonly #pending = new Map<string, Pending>();
  /** The client's id (JSON) → the wire id of its latest request (for notifications/cancelled). */
  readonly #latest = new Map<string, string>();

  /** `.<session tag>.`, when this map is a session's (its ids then describe themselves). */
  readonly #tag: string | undefined;

  constructor(prefix: string, maxPending = 4096, sessionId?: string) {
    this.#prefix = prefix;
    this.#max = maxPending;
    this.#tag = sessionId === undefined ? undefined : `.${sessionTag(sessionId)}.`;
  }

  /** Requests awaiting an answer (for tests and bounds). */
  get size(): number {
    return this.#pending.size;
  }

  /**
   * The messages to send upstream: requests get wire ids (and `meta` merged into `params._meta`,
   * e.g. a W3C traceparent), a cancellation names the wire id of the request it cancels, anything
   * else (notifications, responses to the server's requests) goes unchanged.
   */
  outbound(
    messages: readonly InspectedMessage[],
    meta?: Readonly<Record<string, string>>,
  ): { messages: Array<Record<string, unknown>>; wireIds: string[] } {
    const out: Array<Record<string, unknown>> = [];
    const wireIds: string[] = [];
    for (const m of messages) {
      if (m.type === "request") {
        const clientId = m.id ?? null;
        const idJson = JSON.stringify(clientId);
        const list = isListMethod(m.method) ? m.method! : undefined;
        // Kept by its short head: the description is for other instances, not this map's memory.
        const head = `${this.#prefix}${++this.#seq}`;
        const wire = this.#wire(head, idJson);
        this.#pending.set(head, { clientId, ...(list !== undefined ? { list } : {}) });
        this.#latest.set(idJson, head);
        if (this.#pending.size > this.#max) this.#evictOldest();
        wireIds.push(wire);
        out.push(withMeta({ ...m.raw, id: wire }, meta));
        continue;
      }
      if (m.method === "notifications/cancelled") {
        const params = m.raw.params as Record<string, unknown> | undefined;
        const idJson = JSON.stringify(params?.requestId ?? null);
        const head = this.#latest.get(idJson);
        // A cancellation of a request we never forwarded names nothing upstream: drop it.
        if (head === undefined) continue;
        out.push({ ...m.raw, params: { ...params, requestId: this.#wire(head, idJson) } });
        continue;
      }
      out.push(m.raw);
    }
    return { messages: out, wireIds };
  }

  /**
   * One message from the upstream. A response gets its client id back (and is filtered when its
   * request was a list); a response to an id we never issued is dropped (undefined), except the
   * id-less transport errors (`id: null`), which pass, filtered as any list. Requests and
   * notifications from the server pass unchanged. Returns the same object when nothing changed.
   */
  inbound(
    message: unknown,
    visible: VisibilityPredicate | undefined,
    era: Era,
  ): Record<string, unknown> | undefined {
    if (!message || typeof message !== "object" || Array.isArray(message)) return undefined;
    const m = message as Record<string, unknown>;
    const isResponse =
      !Object.hasOwn(m, "method") && (Object.hasOwn(m, "result") || Object.hasOwn(m, "error"));
    if (!isResponse) return m;
    if (m.id === null) return visible ? filterListResponse(m, ANY_LIST, visible, era) : m;
    if (typeof m.id !== "string") return undefined;
    const head = this.#headOf(m.id);
    let p = this.#pending.get(head);
    if (p) {
      this.#pending.delete(head);
      const idJson = JSON.stringify(p.clientId);
      if (this.#latest.get(idJson) === head) this.#latest.delete(idJson);
    } else {
      // Issued by another instance, or delivered once already (a replay the client asked for).
      p = this.#tag === undefined ? undefined : described(m.id, this.#tag);
      if (!p) return undefined;
    }
    const back = { ...m, id: p.clientId };
    return p.list && visible ? filterListResponse(back, p.list, visible, era) : back;
  }

  /**
   * Give up on the requests sent as `wireIds` that are still unanswered (the stream that would
   * carry their answers ended for good): their client ids, for the gateway's own error answers.
   * They are forgotten here: an answer arriving later is read as a replay would be (the client
   * drops a second answer to one id).
   *
   * @example for (const { clientId } of ids.abandon(sent)) write(renderRpcError(clientId, { kind: "upstream_timeout" }));
   */
  abandon(wireIds: readonly string[]): Array<{ wire: string; clientId: JsonRpcId }> {
    const out: Array<{ wire: string; clientId: JsonRpcId }> = [];
    for (const wire of wireIds) {
      const head = this.#headOf(wire);
      const p = this.#pending.get(head);
      if (!p) continue;
      this.#pending.delete(head);
      const idJson = JSON.stringify(p.clientId);
      if (this.#latest.get(idJson) === head) this.#latest.delete(idJson);
      out.push({ wire, clientId: p.clientId });
    }
    return out;
  }

  /** Map every message of a JSON body or SSE event (an object or a batch array). */
  inboundValue(
    value: unknown,
    visible: VisibilityPredicate | undefined,
    era: Era,
  ): { value: unknown; changed: boolean } {
    if (Array.isArray(value)) {
      const out = value.map((v) => this.inbound(v, visible, era)).filter((v) => v !== undefined);
      return { value: out, changed: out.length !== value.length || out.some((v, i) => v !== value[i]) };
    }
    const out = this.inbound(value, visible, era);
    return { value: out, changed: out !== value };
  }

  /** The id on the wire for the request `head`: self-describing in a session (see the class). */
  #wire(head: string, idJson: string): string {
    return this.#tag === undefined ? head : `${head}${this.#tag}${Buffer.from(idJson).toString("base64url")}`;
  }

  /** The head a wire id of ours starts with (the whole id outside a session). */
  #headOf(wire: string): string {
    const at = this.#tag === undefined ? -1 : wire.indexOf(this.#tag);
    return at === -1 ? wire : wire.slice(0, at);
  }

  #evictOldest(): void {
    const oldest = this.#pending.entries().next().value;
    if (oldest === undefined) return;
    const [head, p] = oldest;
    this.#pending.delete(head);
    // Its cancellation target goes too: #latest never holds more than #pending does.
    const key = JSON.stringify(p.clientId);
    if (this.#latest.get(key) === head) this.#latest.delete(key);
  }

  /** Client ids remembered for cancellations (for tests and bounds: never more than `size`). */
  get cancellable(): number {
    return this.#latest.size;
  }
}

/** A session's tag in its wire ids: 8 characters of a digest of its id (the same on every instance). */
function sessionTag(sessionId: string): string {
  return createHash("sha256").update(sessionId).digest("base64url").slice(0, 8);
}

/**
 * Longest description read back: a client id is at most MAX_ID_LENGTH (256) characters, which JSON
 * may write as up to 6 bytes each (`\u0001`), and base64url makes 4 of every 3 bytes: 2052.
 */
const MAX_DESCRIPTION = 2100;

/**
 * The request a self-describing wire id of this session names, or undefined when it is not one
 * (another session's tag, not our form, or a description that does not read as ours).
 */
function described(wire: string, tag: string): Pending | undefined {
  const at = wire.indexOf(tag);
  // `<prefix><n>` before the tag: the prefix is an instance's, any instance's.
  if (at === -1 || !/^[A-Za-z0-9-]{1,80}\d$/.test(wire.slice(0, at))) return undefined;
  const rest = wire.slice(at + tag.length);
  if (rest.length > MAX_DESCRIPTION || !/^[A-Za-z0-9_-]+$/.test(rest)) return undefined;
  let clientId: unknown;
  try {
    clientId = JSON.parse(Buffer.from(rest, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
  const idOk = clientId === null || typeof clientId === "string" || Number.isFinite(clientId);
  return idOk ? { clientId: clientId as JsonRpcId, list: ANY_LIST } : undefined;
}

/**
 * A message with extra `params._meta` entries (e.g. a W3C traceparent); the same object when there
 * are none.
 *
 * @example withMeta(request, { traceparent: "00-…-01" })
 */
export function withMeta(
  msg: Record<string, unknown>,
  meta: Readonly<Record<string, string>> | undefined,
): Record<string, unknown> {
  if (!meta || Object.keys(meta).length === 0) return msg;
  const params = (msg.params && typeof msg.params === "object" ? msg.params : {}) as Record<string, unknown>;
  const prior = (params._meta && typeof params._meta === "object" ? params._meta : {}) as Record<
    string,
    unknown
  >;
  return { ...msg, params: { ...params, _meta: { ...prior, ...meta } } };
}

/**
 * The wire-id maps of one upstream's sessions, shared by every caller of that upstream. Sized like
 * the gate's session store (`sessions.max`, `sessions.idleTtl`): a map is forgotten when its session
 * has been idle past the TTL (the gate forgot it too) or ended, and only then, so one caller opening
 * many sessions can never push out the map of another caller's live session (whose answers on the
 * GET stream would then be dropped as unattributable). Least recently used first, so pruning the
 * idle ones is amortised O(1).
 *
 * @example
 * const maps = new SessionWireIds({ prefix: "mcpgate-1f2e3d4c-", maxSessions: 100_000, idleTtlMs: 1_800_000 });
 * const ids = maps.forSession("sid", Date.now());
 */
export class SessionWireIds {
  readonly #prefix: string;
  readonly #max: number;
  readonly #idleTtlMs: number;
  #seq = 0;
  /** Session id → its map and when it was last used (insertion order = least recently used first). */
  readonly #sessions = new Map<string, { ids: WireIds; usedAt: number }>();

  constructor(options: { prefix: string; maxSessions: number; idleTtlMs: number }) {
    this.#prefix = options.prefix;
    this.#max = options.maxSessions;
    this.#idleTtlMs = options.idleTtlMs;
  }

  /** Sessions whose maps are held (for tests and bounds). */
  get size(): number {
    return this.#sessions.size;
  }

  /** A map for one stateless request (never kept). */
  forRequest(): WireIds {
    return new WireIds(`${this.#prefix}r${++this.#seq}-`);
  }

  /** The map of a session, kept across its requests: answers may arrive on its GET stream. */
  forSession(sessionId: string, nowMs: number): WireIds {
    const held = this.#sessions.get(sessionId);
    if (held) this.#sessions.delete(sessionId);
    const ids = held?.ids ?? new WireIds(`${this.#prefix}s${++this.#seq}-`, undefined, sessionId);
    this.#sessions.set(sessionId, { ids, usedAt: nowMs });
    for (const [id, s] of this.#sessions) {
      if (nowMs - s.usedAt <= this.#idleTtlMs) break;
      this.#sessions.delete(id);
    }
    // The gate admits at most `maxSessions` live sessions; past that only idle ones can be here.
    if (this.#sessions.size > this.#max) this.#sessions.delete(this.#sessions.keys().next().value!);
    return ids;
  }

  /** The session ended (DELETE, or the upstream no longer knows it). */
  forget(sessionId: string): void {
    this.#sessions.delete(sessionId);
  }
}
