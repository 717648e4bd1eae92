import type { CredentialVerifier } from "../authn/verifier.js";
import { isProbeAllowedMethod } from "../authz/probe.js";
import type { AuditEvent } from "../core/audit-event.js";
import { type ChallengeContext, type HttpResponseSpec, renderDenial } from "../core/challenge.js";
import { isoNow } from "../core/clock.js";
import type { GateRequest, StateStore } from "../core/contracts.js";
import { McpGateError } from "../core/errors.js";
import { displayOf, type Identity } from "../core/identity.js";
import type { Denial } from "../core/outcome.js";
import type { InspectedMessage } from "../mcp/jsonrpc.js";
import { traceStateStore, traceVerifier } from "../observe/tracing-wrappers.js";
import { createMemoryStateStore } from "../stores/memory-state.js";
import type { Admission, Authenticated, Gate, GateDecision, GateOptions } from "./admission.js";
import { createAuthentication } from "./authenticate.js";
import { authorizeMessages } from "./authorize.js";
import { bodylessPlan, freezePlan, type ResponsePlan } from "./plan.js";
import { inspectRequest } from "./request-shape.js";
import { protectedResourceMetadataUrl, redactSessionId } from "./results.js";

export type {
  Admission,
  Authenticated,
  AuthenticateResult,
  Gate,
  GateDecision,
  GateOptions,
} from "./admission.js";
export type { ResponsePlan } from "./plan.js";
export { forbiddenError, protectedResourceMetadataUrl, redactSessionId, toolErrorResult } from "./results.js";

const DEFAULT_MAX_BODY = 4 * 1024 * 1024;

/** The `watch` of each verifier that has one (stored keys: revocation within 1 s). */
function watchersOf(verifiers: readonly CredentialVerifier[]): NonNullable<GateOptions["watchers"]> {
  return verifiers.flatMap((v) => {
    const w = v as CredentialVerifier & {
      watch?: (identity: Identity, until: AbortSignal) => AbortSignal | undefined;
    };
    return typeof w.watch === "function"
      ? [(auth: Authenticated, until: AbortSignal) => w.watch!(auth.identity, until)]
      : [];
  });
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
    // Tracing (docs/tracing.md): authentication and the state store are child spans of the
    // request's span; without an SDK the wrappers call straight through.
    verifiers: options.verifiers.map(traceVerifier),
    state: traceStateStore(options.state ?? createMemoryStateStore()),
    // Open streams end when a stored key is revoked (issue 14 item 5), in the library as in the
    // gateway: by default, every verifier that can watch a credential does.
    watchers: options.watchers ?? watchersOf(options.verifiers),
  });
  const allowedOrigins = new Set(
    (options.origins ?? [publicUrl.origin]).map((o) => o.toLowerCase().replace(/\/$/, "")),
  );
  const oauth = options.verifiers.some((v) => v.kind === "oauth2");
  const challenge: ChallengeContext = {
    realm: resolved.realm!,
    ...(oauth ? { resourceMetadataUrl: protectedResourceMetadataUrl(publicUrl) } : {}),
    // The 401 `scope` is the least a client needs to start (issue 14 item 7); PRM lists them all.
    ...(oauth && options.authorizer
      ? { scopes: options.authorizer.challengeScopes?.() ?? options.authorizer.scopesSupported() }
      : {}),
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
  const audit = (event: Omit<AuditEvent, "time">) => observer.audit?.({ time: isoNow(), ...event });

  const { authenticateRequest } = createAuthentication({ resolved, allowedOrigins, observer, audit, render });

  async function admit(req: GateRequest): Promise<GateDecision> {
    const a = await authenticateRequest(req);
    if (!a.ok) return a;
    return admitAuthenticated(a.auth, req);
  }

  async function admitAuthenticated(auth: Authenticated, req: GateRequest): Promise<GateDecision> {
    const { requestId, identity, ip, method } = auth;
    const actor = displayOf(identity);
    // 4–5. What the request is: JSON-RPC messages, era, request-metadata headers, canonical URIs.
    const shape = inspectRequest(req, method);
    if (!shape.ok) return deny(shape.denial);
    const { messages, batch, body, era, sessionId, initialize } = shape;
    const admission: Admission = Object.freeze({
      ...auth,
      era,
      messages: Object.freeze(messages),
      batch,
      initialize,
      ...(sessionId !== undefined ? { sessionId } : {}),
      ...(body !== undefined ? { body } : {}),
    });

    // 6. Probe keys are read-only: refused methods are answered here, never forwarded.
    const probeDropped = new Set<InspectedMessage>();
    if (identity.probe) {
      const refusedAll = messages.filter(
        (m) => m.type !== "response" && m.method && !isProbeAllowedMethod(m.method),
      );
      for (const n of refusedAll.filter((m) => m.type === "notification")) {
        audit({ type: "denied", actor, ip, requestId, method: n.method, reason: "probe_key" });
        probeDropped.add(n);
      }
      // A refused request is answered; a refused notification has no id to answer (JSON-RPC §4.1):
      // it is dropped, and a request of nothing else is accepted (202) with nothing forwarded.
      const refused = refusedAll.find((m) => m.type === "request");
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
    const verdict = resolved.authorizer
      ? authorizeMessages(resolved.authorizer, admission, (m, reason) => {
          audit({ type: "denied", actor, ip, requestId, method: m.method, tool: m.name, reason });
          observer.decision?.({ method: m.method, tool: m.name, decision: "denied" });
        })
      : undefined;
    const pendingDenial = verdict?.denial ? deny(verdict.denial, admission) : undefined;
    const candidates = verdict?.allowed ?? messages;
    const allowed = probeDropped.size > 0 ? candidates.filter((m) => !probeDropped.has(m)) : candidates;

    // 9. Session check + rate limit: one call (one Redis round trip).
    const buckets = pendingDenial ? [] : (resolved.rateLimits?.bucketsFor(identity, allowed) ?? []);
    // Any 2025-era request naming a session is checked, an `initialize` too: otherwise a 2025-03-26
    // batch [initialize, tools/call] could ride someone else's session past the check.
    const checkSession = era === "2025" && sessionId !== undefined;
    if (resolved.state && (checkSession || buckets.length > 0)) {
      let res: Awaited<ReturnType<StateStore["admit"]>>;
      try {
        const input: Parameters<StateStore["admit"]>[0] = { buckets, nowMs: Date.now() };
        if (checkSession)
          input.session = {
            id: scoped(sessionId!),
            principal: identity.principal,
            idleTtlMs: resolved.sessionIdleTtlMs!,
          };
        res = await resolved.state.admit(input);
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
          tool: allowed.find((m) => m.name)?.name,
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
    const plan = planOf(admission, allowed, verdict);
    // 10. Room for the session an `initialize` may mint (issue 14 item 3): refused before the
    // upstream mints it, never made room for by evicting another caller's live session.
    if (plan.bindSession && resolved.state?.sessionRoom) {
      let room: Awaited<ReturnType<NonNullable<StateStore["sessionRoom"]>>>;
      try {
        room = await resolved.state.sessionRoom(identity.principal);
      } catch (err) {
        observer.storeError?.("state", err);
        audit({ type: "store_error", actor, ip, requestId, reason: "state store unavailable" });
        return deny({ kind: "store_unavailable" });
      }
      if (!room.ok) {
        audit({ type: "rate_limited", actor, ip, requestId, reason: `sessions:${room.scope}` });
        return deny({ kind: "session_limit", scope: room.scope, retryAfterSec: room.retryAfterSec });
      }
    }
    return { ok: true, admission, plan };
  }

  function planOf(
    admission: Admission,
    allowed: readonly InspectedMessage[],
    verdict: ReturnType<typeof authorizeMessages> | undefined,
  ): ResponsePlan {
    const visible = verdict?.visible;
    if (admission.method !== "POST") return bodylessPlan(admission.era, admission.method === "GET", visible);
    const localResponses = verdict?.localResponses ?? [];
    const forwardable = allowed.length > 0 && !verdict?.refusedNotification;
    return freezePlan({
      // Nothing left to forward: the gate's own answers (200), or — only refused notifications — 202.
      answer: forwardable ? "forward" : localResponses.length > 0 ? "local" : "accepted",
      forward: forwardable ? allowed : [],
      forwardIsWhole: forwardable && allowed.length === admission.messages.length,
      localResponses,
      bindSession: admission.initialize && allowed.some((m) => m.method === "initialize"),
      expectsAnswers: forwardable && allowed.some((m) => m.type === "request"),
      era: admission.era,
      ...(visible ? { visible } : {}),
    });
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
          scoped(res.sessionId),
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
      await state.removeSession(scoped(admission.sessionId));
      audit({
        type: "session_closed",
        actor: displayOf(admission.identity),
        ip: admission.ip,
        requestId: admission.requestId,
        sessionId: redactSessionId(admission.sessionId),
      });
    }
  }

  /** Sessions live under the gate's scope (its mount) in a shared state store. */
  function scoped(sessionId: string): string {
    return resolved.sessionScope ? `${resolved.sessionScope}\u0000${sessionId}` : sessionId;
  }

  function watch(auth: Authenticated, until?: AbortSignal): AbortSignal | undefined {
    const signals: AbortSignal[] = [];
    const exp = auth.identity.expiresAt;
    if (exp !== undefined) {
      // setTimeout holds at most 2^31-1 ms (~24.8 days); a later expiry is beyond any stream.
      const ms = Math.max(0, exp * 1000 - Date.now());
      if (ms < 2 ** 31 - 1) signals.push(AbortSignal.timeout(ms));
    }
    if (resolved.watchers?.length) {
      const end = until ?? new AbortController().signal;
      for (const w of resolved.watchers) {
        const s = w(auth, end);
        if (s) signals.push(s);
      }
    }
    // Nothing can end this credential early: no signal, no listener, no timer.
    if (signals.length === 0) return undefined;
    return signals.length === 1 ? signals[0]! : AbortSignal.any(signals);
  }

  return {
    options: resolved,
    challenge,
    oauth,
    authenticate: authenticateRequest,
    admitAuthenticated,
    admit,
    onResponse,
    watch,
    render,
  };
}
