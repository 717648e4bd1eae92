import { randomUUID } from "node:crypto";
import { parseBearer } from "../authn/bearer.js";
import type { VerifyResult } from "../authn/verifier.js";
import type { AuditEvent } from "../core/audit-event.js";
import type { HttpResponseSpec } from "../core/challenge.js";
import type { GateObserver, GateRequest } from "../core/contracts.js";
import { isMcpGateError } from "../core/errors.js";
import { displayOf } from "../core/identity.js";
import type { Denial } from "../core/outcome.js";
import type { AuthenticateResult, GateOptions } from "./admission.js";
import { header } from "./headers.js";

/**
 * Steps 1–3 of the pipeline, on the headers alone (the front door calls this before it keeps a
 * byte of the body): Origin, method, the credential-guessing guard, then the credential.
 */

/** What authentication needs of the gate. */
export interface AuthenticationContext {
  resolved: GateOptions;
  /** Allowed Origin values, lower-case, without a trailing slash. */
  allowedOrigins: ReadonlySet<string>;
  observer: GateObserver;
  audit(event: Omit<AuditEvent, "time">): void;
  render(denial: Denial): HttpResponseSpec;
}

/**
 * The gate's authentication: `authenticate(token)` tries the verifiers, `authenticateRequest(req)`
 * runs steps 1–3.
 *
 * @example const { authenticateRequest } = createAuthentication({ resolved, allowedOrigins, observer, audit, render });
 */
export function createAuthentication(ctx: AuthenticationContext) {
  const { resolved, allowedOrigins, observer, audit, render } = ctx;

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

  async function authenticateRequest(req: GateRequest): Promise<AuthenticateResult> {
    const requestId = req.requestId ?? randomUUID();
    const method = req.method.toUpperCase();
    const ip = resolved.guard
      ? resolved.guard.sourceOf(req.remoteAddress, req.headers)
      : (req.remoteAddress ?? "unknown");
    const refuse = (denial: Denial): AuthenticateResult => ({ ok: false, denial, response: render(denial) });

    // 1. Origin (spec T-1125: present and invalid → 403; absent is allowed).
    const origin = header(req.headers, "origin");
    if (origin !== undefined && !allowedOrigins.has(origin.toLowerCase().replace(/\/$/, ""))) {
      return refuse({ kind: "origin_forbidden" });
    }

    if (method !== "POST" && method !== "GET" && method !== "DELETE") {
      return refuse({ kind: "method_not_allowed", allow: ["GET", "POST", "DELETE"] });
    }

    // 2. Guard: a locked-out source is refused before its credential is even looked at.
    if (resolved.guard) {
      const wait = await resolved.guard.lockedFor(ip);
      if (wait > 0) return refuse({ kind: "locked_out", retryAfterSec: wait });
    }

    // 3. Authenticate (fail closed when nothing is configured).
    if (resolved.verifiers.length === 0) return refuse({ kind: "not_configured" });
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
        return refuse({ kind: "store_unavailable" });
      }
    }
    if (!result.ok) {
      observer.authFailure?.(result.reason);
      audit({ type: "auth_failure", ip, requestId, reason: result.reason });
      if (resolved.guard && result.reason !== "missing") {
        const lockedFor = await resolved.guard.recordFailure(ip);
        if (lockedFor > 0) {
          audit({ type: "lockout", ip, requestId, detail: { seconds: lockedFor } });
          return refuse({ kind: "locked_out", retryAfterSec: lockedFor });
        }
      }
      return refuse({ kind: "unauthenticated", reason: result.reason });
    }
    const identity = result.identity;
    // Every success is reported; the audit trail keeps one per (actor, source) per minute
    // (observe/audit.ts successIntervalMs), so the trail shows who came from where without a line per request.
    audit({
      type: "auth_success",
      actor: displayOf(identity),
      ip,
      requestId,
      detail: { kind: identity.kind },
    });
    return { ok: true, auth: Object.freeze({ requestId, identity, token, ip, method }) };
  }

  return { authenticate, authenticateRequest };
}
