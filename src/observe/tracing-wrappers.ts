import { type Context, context, createContextKey, SpanKind, trace } from "@opentelemetry/api";
import { markSpanFailed, recordingParent, TRACE_ATTR, withChildSpan } from "./tracing.js";

/**
 * Child spans for the parts plugged into the gate, by wrapping them once where they are assembled
 * (`createGate` for the library and the gateway alike; the key store where it is opened): the
 * parts themselves (authn/, stores/) know nothing of tracing. Without a recording request span
 * (no SDK, or an unsampled trace) a wrapped call is the plain call.
 */

/** Objects these wrappers made: wrapping one again returns it as it is (no doubled spans). */
const wrapped = new WeakSet<object>();

/** Give `target` these methods instead of its own; every other property is the target's. */
function overriding<T extends object>(target: T, overrides: Record<PropertyKey, unknown>): T {
  if (wrapped.has(target)) return target;
  // The target's own methods, bound once (not on every access: `accepts` is called per request).
  const bound = new Map<PropertyKey, { fn: unknown; boundFn: unknown }>();
  const proxy = new Proxy(target, {
    get(t, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop];
      const value = Reflect.get(t, prop, t) as unknown;
      if (typeof value !== "function") return value;
      const hit = bound.get(prop);
      if (hit?.fn === value) return hit.boundFn;
      const boundFn = value.bind(t);
      bound.set(prop, { fn: value, boundFn });
      return boundFn;
    },
  });
  wrapped.add(proxy);
  return proxy;
}

/** Counts the store and network round trips made inside one authentication (cache-hit detection). */
interface LookupCounter {
  lookups: number;
}
const LOOKUPS = createContextKey("mcpgate.auth.lookups");
const HTTP_CHILDREN = createContextKey("mcpgate.http.children");

/** Note one store or network round trip made for the authentication in progress, if any. */
export function noteAuthLookup(ctx: Context = context.active()): void {
  const counter = ctx.getValue(LOOKUPS) as LookupCounter | undefined;
  if (counter) counter.lookups += 1;
}

/** Whether outgoing HTTP requests made in `ctx` get their own CLIENT span (JWKS, introspection). */
export function wantsHttpChildSpans(ctx: Context = context.active()): boolean {
  return ctx.getValue(HTTP_CHILDREN) === true && trace.getSpan(ctx)?.isRecording() === true;
}

/** A credential verifier as far as tracing is concerned (authn/verifier.ts, matched structurally). */
interface VerifierLike {
  readonly kind: string;
  verify(token: string): Promise<{ ok: boolean; reason?: string }>;
}

/**
 * Wrap a credential verifier so each `verify` is a child span `mcpgate.authenticate` with the
 * verifier kind, the result (`ok` or the failure reason) and whether it was answered from cache
 * (no key-store lookup, JWKS fetch or introspection call was made). The token never reaches the
 * span. Every other property is the verifier's own.
 *
 * @example const verifiers = built.verifiers.map(traceVerifier);
 */
export function traceVerifier<V extends VerifierLike>(verifier: V): V {
  const verify = (token: string) => {
    if (!recordingParent()) return verifier.verify(token);
    const counter: LookupCounter = { lookups: 0 };
    return withChildSpan(
      "mcpgate.authenticate",
      { [TRACE_ATTR.verifier]: verifier.kind },
      async (span) => {
        const result = await verifier.verify(token);
        if (span) {
          span.setAttribute(TRACE_ATTR.cacheHit, counter.lookups === 0);
          span.setAttribute(TRACE_ATTR.authResult, result.ok ? "ok" : (result.reason ?? "invalid"));
          if (!result.ok) markSpanFailed(span, result.reason ?? "invalid");
        }
        return result;
      },
      SpanKind.INTERNAL,
      (ctx) => ctx.setValue(LOOKUPS, counter).setValue(HTTP_CHILDREN, true),
    );
  };
  return overriding(verifier, { verify });
}

/** A key store as far as tracing is concerned (stores/key-store.ts, matched structurally). */
interface KeyLookupLike {
  get(id: string): Promise<unknown>;
}

/**
 * Wrap a key store so each `get` (the verifier's lookup by key id, made on a cache miss) is a
 * child span `mcpgate.keys.get` and counts as a lookup for the enclosing authentication span.
 *
 * @example const store = traceKeyStore(await openKeyStore(url), "sqlite");
 */
export function traceKeyStore<S extends KeyLookupLike>(store: S, kind: string): S {
  const get = (id: string) => {
    if (!recordingParent()) return store.get(id);
    noteAuthLookup();
    return withChildSpan(
      "mcpgate.keys.get",
      { [TRACE_ATTR.store]: kind, [TRACE_ATTR.storeOp]: "get" },
      () => store.get(id),
      SpanKind.CLIENT,
    );
  };
  return overriding(store, { get });
}

/** The gate's state store as far as tracing is concerned (core/contracts.ts StateStore). */
interface StateStoreLike {
  admit(input: {
    session?: unknown;
    buckets: readonly unknown[];
  }): Promise<{ session?: { status: string }; rate?: { ok: boolean } }>;
  bindSession(sessionId: string, owner: unknown, idleTtlMs: number): Promise<void>;
  removeSession(sessionId: string): Promise<void>;
}

/**
 * The kind of a state store for its spans, told from its shape: the memory store counts its
 * buckets, the Redis store has a key prefix; anything else is `custom`.
 */
function stateStoreKind(store: object): string {
  if (typeof (store as { bucketCount?: unknown }).bucketCount === "function") return "memory";
  if (typeof (store as { prefix?: unknown }).prefix === "string") return "redis";
  return "custom";
}

/**
 * Wrap the state store (session bindings and rate-limit buckets) so `admit`, `bindSession` and
 * `removeSession` are child spans (`mcpgate.state.*`, CLIENT when the store is remote) with the
 * store kind, whether a session was checked and its status, the number of buckets and whether a
 * limit refused. Session ids and bucket keys never reach the span.
 *
 * @example const state = traceStateStore(createRedisStateStore({ url })); // kind "redis"
 */
export function traceStateStore<S extends StateStoreLike>(store: S, kind = stateStoreKind(store)): S {
  const spanKind = kind === "memory" ? SpanKind.INTERNAL : SpanKind.CLIENT;
  const admit: S["admit"] = (input) =>
    !recordingParent()
      ? store.admit(input)
      : withChildSpan(
          "mcpgate.state.admit",
          {
            [TRACE_ATTR.store]: kind,
            [TRACE_ATTR.storeOp]: "admit",
            [TRACE_ATTR.sessionChecked]: input.session !== undefined,
            [TRACE_ATTR.buckets]: input.buckets.length,
          },
          async (span) => {
            const res = await store.admit(input);
            if (span) {
              if (res.session) span.setAttribute(TRACE_ATTR.sessionStatus, res.session.status);
              if (res.rate) span.setAttribute(TRACE_ATTR.rateLimited, !res.rate.ok);
            }
            return res;
          },
          spanKind,
        );
  const bindSession: S["bindSession"] = (id, owner, ttl) =>
    !recordingParent()
      ? store.bindSession(id, owner, ttl)
      : withChildSpan(
          "mcpgate.state.bind_session",
          { [TRACE_ATTR.store]: kind, [TRACE_ATTR.storeOp]: "bind_session" },
          () => store.bindSession(id, owner, ttl),
          spanKind,
        );
  const removeSession: S["removeSession"] = (id) =>
    !recordingParent()
      ? store.removeSession(id)
      : withChildSpan(
          "mcpgate.state.remove_session",
          { [TRACE_ATTR.store]: kind, [TRACE_ATTR.storeOp]: "remove_session" },
          () => store.removeSession(id),
          spanKind,
        );
  return overriding(store, { admit, bindSession, removeSession });
}

/** An upstream's identity hook as far as tracing is concerned (identity/upstream-identity.ts). */
interface UpstreamIdentityLike {
  readonly mode: string;
  credential(request: never): Promise<{ ok: boolean; reason?: string; audit?: { cached?: boolean } }>;
}

/**
 * Wrap an upstream's identity hook so each `credential` (signing an identity assertion, or an
 * RFC 8693 token exchange and its HTTP call) is a child span `mcpgate.identity` with the mode,
 * whether a cached credential was used (when the hook says) and the refusal reason. The
 * credential itself — assertion or exchanged token — never reaches the span.
 *
 * @example const hook = traceUpstreamIdentity(createUpstreamIdentity({ upstream, mode, audience, signer }));
 */
export function traceUpstreamIdentity<H extends UpstreamIdentityLike>(hook: H): H {
  if (hook.mode === "none") return hook;
  const credential = ((request: never) =>
    !recordingParent()
      ? hook.credential(request)
      : withChildSpan(
          "mcpgate.identity",
          { "mcpgate.identity.mode": hook.mode },
          async (span) => {
            const res = await hook.credential(request);
            if (span) {
              if (res.audit?.cached !== undefined)
                span.setAttribute("mcpgate.identity.cached", res.audit.cached);
              if (!res.ok) markSpanFailed(span, res.reason ?? "refused");
            }
            return res;
          },
          SpanKind.INTERNAL,
          (ctx) => ctx.setValue(HTTP_CHILDREN, true),
        )) as H["credential"];
  return overriding(hook, { credential });
}
