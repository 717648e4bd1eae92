import { randomUUID } from "node:crypto";
import { parseBearer } from "../authn/bearer.js";
import type { CredentialVerifier, VerifyResult } from "../authn/verifier.js";
import { isProbeAllowedMethod } from "../authz/probe.js";
import type { AuditEvent } from "../core/audit-event.js";
import { type ChallengeContext, type HttpResponseSpec, renderDenial } from "../core/challenge.js";
import type {
  Authorizer,
  GateObserver,
  GateRequest,
  Guard,
  RateLimitPlanner,
  StateStore,
} from "../core/contracts.js";
import { isMcpGateError, McpGateError } from "../core/errors.js";
import { displayOf, type Identity } from "../core/identity.js";
import type { Denial, JsonRpcId } from "../core/outcome.js";
import { checkMetadataHeaders, detectEra, type Era } from "../mcp/era.js";
import { type InspectedMessage, parseJsonRpc } from "../mcp/jsonrpc.js";
import { createMemoryStateStore } from "../stores/memory-state.js";

/** Options of {@link createGate}. Resolved once, frozen. */
export interface GateOptions {
  /** Tried in order; an empty list means every request is refused with 500 (fail closed). */
  verifiers: CredentialVerifier[];
  /** Canonical resource URI (RFC 9728 `resource`, default JWT audience). */
  publicUrl: string;
  /** Allowed Origin values. Absent Origin is always allowed; default: the publicUrl's origin. */
  origins?: string[];
  /** Body limit in bytes (default 4 MiB), enforced by the adapters that read the body. */
  maxBodyBytes?: number;
  realm?: string;
  /**
   * Session bindings and rate-limit buckets. Default: an in-memory store (100 000 sessions, least
   * recently used evicted), so sessions are identity-bound even when nothing is configured.
   */
  state?: StateStore;
  sessionIdleTtlMs?: number;
  authorizer?: Authorizer;
  rateLimits?: RateLimitPlanner;
  guard?: Guard;
  observer?: GateObserver;
  /**
   * Whether a missing Mcp-Session-Id on a non-initialize 2025-era request is refused with 400.
   * "auto" (default): once the upstream has minted a session id.
   */
  requireSession?: "auto" | boolean;
}

/** What the gate learned about an admitted request; the transport forwards it and reports back. */
export interface Admission {
  requestId: string;
  identity: Identity;
  /** The verified credential, for in-process SDK handlers (`req.auth.token`). Never forwarded. */
  token: string;
  era: Era;
  messages: InspectedMessage[];
  batch: boolean;
  sessionId?: string;
  /** True when this request carries an `initialize` request (a session may be minted). */
  initialize: boolean;
  /**
   * Messages answered by the gate itself (denied tool calls in a batch); `forwardBody` then holds
   * the remaining messages. Empty in the common case.
   */
  localResponses: Array<Record<string, unknown>>;
  /** The body to forward when it differs from the original (some batch elements were answered locally). */
  forwardBody?: string;
  /** Set when list results must be filtered for this caller. */
  listFilter?: (kind: "tools" | "resources" | "prompts", name: string) => boolean;
  ip: string;
}

export type GateDecision =
  | { ok: true; admission: Admission }
  | { ok: false; denial: Denial; response: HttpResponseSpec; admission?: Admission };

export interface Gate {
  readonly options: Readonly<GateOptions>;
  readonly challenge: ChallengeContext;
  /** True when an OAuth verifier is configured (PRM served, `resource_metadata` in challenges). */
  readonly oauth: boolean;
  admit(req: GateRequest): Promise<GateDecision>;
  /** Report the upstream's response head: binds minted sessions, forgets ended ones. */
  onResponse(
    admission: Admission,
    res: { status: number; sessionId?: string; method: string },
  ): Promise<void>;
  /** Render a refusal (e.g. upstream failures) with this gate's challenge context. */
  render(denial: Denial): HttpResponseSpec;
}

const DEFAULT_MAX_BODY = 4 * 1024 * 1024;

function header(headers: GateRequest["headers"], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Build the request pipeline shared by the middleware and the gateway (DESIGN.md §2):
 * origin → body parse → guard → authenticate → session check → authorize → rate limit.
 *
 * @example
 * const gate = createGate({ verifiers: [createStaticKeyVerifier({ key })], publicUrl: "http://127.0.0.1:8080/mcp" });
 * const d = await gate.admit({ method: "POST", headers, bodyText });
 */
export function createGate(options: GateOptions): Gate {
  if (!options || !Array.isArray(options.verifiers)) {
    throw new McpGateError("ERR_INVALID_OPTION", "createGate: verifiers must be an array");
  }
  let publicUrl: URL;
  try {
    publicUrl = new URL(options.publicUrl);
  } catch {
    throw new McpGateError("ERR_INVALID_OPTION", "createGate: publicUrl must be an absolute URL");
  }
  const resolved: GateOptions = Object.freeze({
    maxBodyBytes: DEFAULT_MAX_BODY,
    realm: "mcp",
    sessionIdleTtlMs: 30 * 60_000,
    requireSession: "auto" as const,
    ...options,
    state: options.state ?? createMemoryStateStore(),
  });
  const allowedOrigins = new Set(
    (options.origins ?? [publicUrl.origin]).map((o) => o.toLowerCase().replace(/\/$/, "")),
  );
  const oauth = options.verifiers.some((v) => v.kind === "oauth2");
  const challenge: ChallengeContext = {
    realm: resolved.realm!,
    ...(oauth ? { resourceMetadataUrl: protectedResourceMetadataUrl(publicUrl) } : {}),
    ...(oauth && options.authorizer ? { scopes: options.authorizer.scopesSupported() } : {}),
  };
  const observer = options.observer ?? {};
  let upstreamMintsSessions = resolved.requireSession === true;

  const render = (denial: Denial): HttpResponseSpec => renderDenial(denial, challenge);
  const deny = (denial: Denial, admission?: Admission): GateDecision => ({
    ok: false,
    denial,
    response: render(denial),
    ...(admission ? { admission } : {}),
  });
  const audit = (event: Omit<AuditEvent, "time">) =>
    observer.audit?.({ time: new Date().toISOString(), ...event });

  async function authenticate(token: string): Promise<VerifyResult> {
    let last: VerifyResult = { ok: false, reason: "invalid" };
    for (const v of resolved.verifiers) {
      if (!v.accepts(token)) continue;
      const r = await v.verify(token);
      if (r.ok) return r;
      // Keep the most specific reason (revoked, expired…) over the generic "invalid" a later,
      // catch-all verifier (the static key) gives: it is what the audit trail and metrics report.
      if (last.reason === "invalid") last = r;
    }
    return last;
  }

  async function admit(req: GateRequest): Promise<GateDecision> {
    const requestId = req.requestId ?? randomUUID();
    const method = req.method.toUpperCase();
    const ip = resolved.guard
      ? resolved.guard.sourceOf(req.remoteAddress, req.headers)
      : (req.remoteAddress ?? "unknown");

    // 1. Origin (spec T-1125: present and invalid → 403; absent is allowed).
    const origin = header(req.headers, "origin");
    if (origin !== undefined && !allowedOrigins.has(origin.toLowerCase().replace(/\/$/, ""))) {
      return deny({ kind: "origin_forbidden" });
    }

    if (method !== "POST" && method !== "GET" && method !== "DELETE") {
      return deny({ kind: "method_not_allowed", allow: ["GET", "POST", "DELETE"] });
    }

    // 2. Guard: a locked-out source is refused before its credential is even looked at.
    if (resolved.guard) {
      const wait = await resolved.guard.lockedFor(ip);
      if (wait > 0) return deny({ kind: "locked_out", retryAfterSec: wait });
    }

    // 3. Authenticate (fail closed when nothing is configured).
    if (resolved.verifiers.length === 0) return deny({ kind: "not_configured" });
    const bearer = parseBearer(req.headers.authorization);
    let result: VerifyResult;
    let token = "";
    if (!bearer.ok) {
      result = { ok: false, reason: bearer.reason };
    } else {
      token = bearer.token;
      try {
        result = await authenticate(token);
      } catch (err) {
        observer.storeError?.("credentials", err);
        audit({ type: "store_error", ip, requestId, reason: isMcpGateError(err) ? err.code : "error" });
        return deny({ kind: "store_unavailable" });
      }
    }
    if (!result.ok) {
      observer.authFailure?.(result.reason);
      audit({ type: "auth_failure", ip, requestId, reason: result.reason });
      if (resolved.guard && result.reason !== "missing") {
        const lockedFor = await resolved.guard.recordFailure(ip);
        if (lockedFor > 0) {
          audit({ type: "lockout", ip, requestId, detail: { seconds: lockedFor } });
          return deny({ kind: "locked_out", retryAfterSec: lockedFor });
        }
      }
      return deny({ kind: "unauthenticated", reason: result.reason });
    }
    const identity = result.identity;
    const actor = displayOf(identity);
    // Every success is reported; the audit trail keeps one per (actor, source) per minute
    // (observe/audit.ts successIntervalMs), so the trail shows who came from where without a line per request.
    audit({ type: "auth_success", actor, ip, requestId, detail: { kind: identity.kind } });

    // 4. Body: JSON-RPC parse (POST only). After authentication, so that a caller without a valid
    // credential learns nothing but 401 (the body size limit is enforced earlier, by the adapter).
    let messages: InspectedMessage[] = [];
    let batch = false;
    if (method === "POST") {
      const ct = header(req.headers, "content-type");
      if (ct !== undefined && !/^application\/json\b/i.test(ct.trim()))
        return deny({ kind: "unsupported_media_type" });
      let parsed: ReturnType<typeof parseJsonRpc>;
      if (req.parsedBody !== undefined && typeof req.parsedBody !== "string") {
        parsed = parseJsonRpc(JSON.stringify(req.parsedBody));
      } else {
        const text = typeof req.parsedBody === "string" ? req.parsedBody : (req.bodyText ?? "");
        parsed = parseJsonRpc(text);
      }
      if (!parsed.ok)
        return deny(
          parsed.kind === "parse_error"
            ? { kind: "parse_error", message: parsed.message }
            : { kind: "invalid_request", message: parsed.message },
        );
      messages = parsed.messages;
      batch = parsed.batch;
    }

    // 5. Era and request-metadata headers (2026-07-28: Mcp-Method / Mcp-Name must match the body).
    const protocolVersion = header(req.headers, "mcp-protocol-version");
    const era = detectEra(protocolVersion, messages);
    if (method === "POST" && !batch) {
      const mismatch = checkMetadataHeaders(
        { method: header(req.headers, "mcp-method"), name: header(req.headers, "mcp-name"), protocolVersion },
        messages[0],
        era,
      );
      if (mismatch) return deny({ kind: "header_mismatch", message: mismatch });
    }

    const initialize = messages.some((m) => m.method === "initialize" && m.type === "request");
    const sessionId = era === "2025" ? header(req.headers, "mcp-session-id") : undefined;
    const admission: Admission = {
      requestId,
      identity,
      token,
      era,
      messages,
      batch,
      initialize,
      localResponses: [],
      ip,
      ...(sessionId !== undefined ? { sessionId } : {}),
    };

    // 6. Probe keys are read-only: refused methods are answered here, never forwarded.
    if (identity.probe) {
      const refused = messages.find(
        (m) => m.type !== "response" && m.method && !isProbeAllowedMethod(m.method),
      );
      if (refused) {
        audit({ type: "denied", actor, ip, requestId, method: refused.method, reason: "probe_key" });
        observer.decision?.({ method: refused.method, decision: "probe_denied" });
        return deny({ kind: "probe_denied", id: refused.id ?? null, method: refused.method! }, admission);
      }
    }

    // 7. Session presence (2025 era, once the upstream is known to mint sessions).
    if (era === "2025" && sessionId === undefined && !initialize && method !== "GET") {
      if (upstreamMintsSessions && messages.some((m) => m.type !== "response"))
        return deny({ kind: "session_missing" });
    }

    // 8. Authorize every message. A denial is held until the session has been checked: a request on
    // someone else's session is answered 404 whatever it asks for (DESIGN.md principle 3).
    let pendingDenial: GateDecision | undefined;
    if (resolved.authorizer) {
      const authz = resolved.authorizer;
      const denied: Array<{ m: InspectedMessage; scopes: string[]; reason: string }> = [];
      for (const m of messages) {
        if (m.type === "response") continue;
        const d = authz.authorize(identity, m);
        if (!d.allow) denied.push({ m, scopes: d.scopes, reason: d.reason });
      }
      if (denied.length > 0) {
        for (const d of denied) {
          audit({
            type: "denied",
            actor,
            ip,
            requestId,
            method: d.m.method,
            tool: d.m.name,
            reason: d.reason,
          });
          observer.decision?.({ method: d.m.method, tool: d.m.name, decision: "denied" });
        }
        if (authz.onDenied(identity) === "step-up") {
          const scopes = [...new Set(denied.flatMap((d) => d.scopes))];
          pendingDenial = deny({ kind: "insufficient_scope", scopes }, admission);
        } else if (!batch) {
          const d = denied[0]!;
          pendingDenial = deny(
            {
              kind: "tool_denied",
              id: d.m.id ?? null,
              message: d.reason,
              ...(d.m.method !== "tools/call" ? { asError: true } : {}),
              ...(era === "2026" ? { resultType: "complete" as const } : {}),
            },
            admission,
          );
        } else {
          const deniedSet = new Set(denied.map((d) => d.m));
          for (const d of denied) {
            if (d.m.type === "request")
              admission.localResponses.push(
                d.m.method === "tools/call"
                  ? toolErrorResult(d.m.id ?? null, d.reason, era)
                  : forbiddenError(d.m.id ?? null, d.reason),
              );
          }
          const remaining = messages.filter((m) => !deniedSet.has(m));
          admission.messages = remaining;
          admission.forwardBody = remaining.length ? JSON.stringify(remaining.map((m) => m.raw)) : "";
        }
      }
      if (authz.filtersLists(identity)) {
        admission.listFilter = (kind, name) => authz.isVisible(identity, kind, name);
      }
    }

    // 9. Session check + rate limit: one call (one Redis round trip).
    const buckets = pendingDenial
      ? []
      : (resolved.rateLimits?.bucketsFor(identity, admission.messages) ?? []);
    // Any 2025-era request naming a session is checked, an `initialize` too: otherwise a 2025-03-26
    // batch [initialize, tools/call] could ride someone else's session past the check.
    const checkSession = era === "2025" && sessionId !== undefined;
    if (resolved.state && (checkSession || buckets.length > 0)) {
      let res: Awaited<ReturnType<StateStore["admit"]>>;
      try {
        res = await resolved.state.admit({
          ...(checkSession
            ? {
                session: {
                  id: sessionId!,
                  principal: identity.principal,
                  idleTtlMs: resolved.sessionIdleTtlMs!,
                },
              }
            : {}),
          buckets,
          nowMs: Date.now(),
        });
      } catch (err) {
        observer.storeError?.("state", err);
        audit({ type: "store_error", actor, ip, requestId, reason: "state store unavailable" });
        if (checkSession || !resolved.rateLimits?.failOpen) return deny({ kind: "store_unavailable" });
        res = {};
      }
      if (res.session && res.session.status !== "ok") {
        if (res.session.status === "mismatch") {
          audit({
            type: "session_mismatch",
            actor,
            ip,
            requestId,
            other: res.session.ownerDisplay,
            sessionId: redactSessionId(sessionId!),
          });
        }
        return deny({ kind: "session_unknown" });
      }
      if (res.rate && !res.rate.ok) {
        const b = res.rate.bucket;
        audit({
          type: "rate_limited",
          actor,
          ip,
          requestId,
          reason: b.policy,
          tool: admission.messages.find((m) => m.name)?.name,
        });
        return deny({
          kind: "rate_limited",
          retryAfterSec: Math.max(1, Math.ceil(res.rate.retryAfterMs / 1000)),
          limit: b.limit,
          windowSec: Math.round(b.windowMs / 1000),
          policy: b.policy,
        });
      }
    }

    if (pendingDenial) return pendingDenial;
    // When every message of a batch was answered locally, forwardBody is "" and nothing goes upstream.
    return { ok: true, admission };
  }

  async function onResponse(
    admission: Admission,
    res: { status: number; sessionId?: string; method: string },
  ) {
    const state = resolved.state;
    if (admission.era !== "2025") return;
    if (admission.initialize && res.sessionId && res.status >= 200 && res.status < 300) {
      upstreamMintsSessions = true;
      if (state) {
        await state.bindSession(
          res.sessionId,
          { principal: admission.identity.principal, display: displayOf(admission.identity) },
          resolved.sessionIdleTtlMs!,
        );
        audit({
          type: "session_bound",
          actor: displayOf(admission.identity),
          ip: admission.ip,
          requestId: admission.requestId,
          sessionId: redactSessionId(res.sessionId),
        });
      }
      return;
    }
    if (!state || !admission.sessionId) return;
    const ended = (res.method === "DELETE" && res.status >= 200 && res.status < 300) || res.status === 404;
    if (ended) {
      await state.removeSession(admission.sessionId);
      audit({
        type: "session_closed",
        actor: displayOf(admission.identity),
        ip: admission.ip,
        requestId: admission.requestId,
        sessionId: redactSessionId(admission.sessionId),
      });
    }
  }

  return { options: resolved, challenge, oauth, admit, onResponse, render };
}

/** JSON-RPC result for a tool call the policy refused (DESIGN.md §2: API-key identity → isError). */
export function toolErrorResult(id: JsonRpcId, text: string, era: Era = "2025"): Record<string, unknown> {
  const result: Record<string, unknown> = { content: [{ type: "text", text }], isError: true };
  // 2026-07-28 results carry resultType.
  if (era === "2026") result.resultType = "complete";
  return { jsonrpc: "2.0", id, result };
}

/** JSON-RPC error for a refused non-tool message (resources/read, prompts/get, …) in a batch. */
export function forbiddenError(id: JsonRpcId, message: string): Record<string, unknown> {
  return { jsonrpc: "2.0", id, error: { code: -31001, message } };
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
