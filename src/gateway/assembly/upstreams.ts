import type { IncomingMessage, ServerResponse } from "node:http";
import { createJwtVerifier } from "../../authn/jwt.js";
import type { CredentialVerifier } from "../../authn/verifier.js";
import type { OwnTokenVerifier } from "../../authserver/token-verifier.js";
import { compilePolicy } from "../../authz/policy.js";
import { createRateLimitPlanner } from "../../authz/rate-limit-plan.js";
import {
  durationMs,
  type GatewayConfig,
  type ResolvedUpstream,
  resolveUpstreams,
  signingKeyLocation,
} from "../../config.js";
import type { AuditEvent } from "../../core/audit-event.js";
import type { GateObserver, RateLimitPlanner } from "../../core/contracts.js";
import { McpGateError } from "../../core/errors.js";
import { createGate, type Gate, type GateOptions } from "../../gate/gate.js";
import { createAnswerBudget } from "../../http/answer-budget.js";
import type { Entry } from "../../http/front-door.js";
import { createIdentityRuntime, type IdentityRuntime } from "../../identity/runtime.js";
import type { UpstreamIdentity as IdentityHook } from "../../identity/upstream-identity.js";
import type { Logger } from "../../observe/logger.js";
import { traceUpstreamIdentity } from "../../observe/tracing-wrappers.js";
import { defaultSessionsPerPrincipal } from "../../stores/memory-state.js";
import { SIGNING_KEY_SECRET_ENV } from "../../stores/signing-key-seal.js";
import { createHttpUpstream } from "../http-upstream.js";
import type { Mount, RouteHandler } from "../server.js";
import { createStdioUpstream } from "../stdio/stdio-upstream.js";
import { traceForward } from "../tracing-forward.js";
import type { Upstream, UpstreamIdentity } from "../upstream.js";
import { configuredIssuers, jwtVerifierOptions } from "./oauth-options.js";

/**
 * Config → mounts (docs/upstreams.md): one MCP endpoint per upstream, each its own protected
 * resource — its gate (policy, rate limit, sessions scoped to it, JWT audience = its resource URI,
 * PRM path-suffixed per RFC 9728 §3.1), its relay, its identity hook (docs/identity.md) — plus the
 * JWKS route. The one-upstream shorthand is one mount at `mcpPath` with the config's `publicUrl`.
 */

/** What the assembly shares with every mount. */
export interface MountContext {
  /** The gateway's public URL (the shorthand's resource; the origin of every upstream's). */
  publicUrl: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** The verifiers built once (API keys, static key, OAuth issuers, the authorization server's). */
  verifiers: CredentialVerifier[];
  /** The OAuth issuers' verifier among them: replaced per mount so each has its own default audience. */
  jwtVerifier?: CredentialVerifier;
  /** The gateway's own authorization server's verifier among them: narrowed per mount to its resource. */
  ownTokenVerifier?: OwnTokenVerifier;
  /** Gate options every mount shares (observer, guard, state, limits…). */
  gateOptions: Omit<GateOptions, "verifiers" | "publicUrl" | "authorizer" | "rateLimits" | "sessionScope">;
  onJwksFetch?: (outcome: "ok" | "error") => void;
}

/** The assembled mounts, routes and what they hold open. */
export interface BuiltMounts {
  mounts: Mount[];
  routes: RouteHandler[];
  identity: IdentityRuntime;
  close(): Promise<void>;
}

const noUpstream = () =>
  new McpGateError(
    "ERR_CONFIG_INVALID",
    'upstream: set upstream.url (or --upstream URL) or upstream.command (or --stdio "CMD ARGS")',
  );

function createUpstream(u: ResolvedUpstream, config: GatewayConfig, ctx: MountContext): Upstream {
  const up = u.upstream;
  if (up.url) {
    return createHttpUpstream({
      url: up.url,
      headers: { ...up.headers },
      timeoutMs: durationMs(up.timeout),
      // Sized like the gate's sessions, so no caller can push out another's live session's id map.
      maxSessions: config.sessions.max,
      sessionIdleTtlMs: durationMs(config.sessions.idleTtl),
      ...(up.maxInFlightPerCaller ? { maxInFlightPerCaller: up.maxInFlightPerCaller } : {}),
      ...(up.streamIdleTimeout !== undefined ? { streamIdleMs: durationMs(up.streamIdleTimeout) } : {}),
      // A standalone GET stream per live session: a principal's streams are bounded like its sessions.
      maxStreamsPerCaller: config.sessions.perPrincipal ?? defaultSessionsPerPrincipal(config.sessions.max),
    });
  }
  if (up.command) {
    // docs/stdio.md: one child per session; only allow-listed variables reach it.
    return createStdioUpstream({
      command: [...up.command],
      logger: ctx.logger,
      parentEnv: ctx.env,
      ...(up.env ? { env: { ...up.env } } : {}),
      ...(up.envAllow ? { envAllow: [...up.envAllow] } : {}),
      ...(up.maxChildren ? { maxChildren: up.maxChildren } : {}),
      ...(up.maxChildrenPerPrincipal ? { maxChildrenPerPrincipal: up.maxChildrenPerPrincipal } : {}),
      ...(up.poolSize ? { poolSize: up.poolSize } : {}),
      ...(up.killGrace !== undefined ? { killGraceMs: durationMs(up.killGrace) } : {}),
      idleTtlMs: durationMs(config.sessions.idleTtl),
      initTimeoutMs: durationMs(up.timeout),
    });
  }
  throw noUpstream();
}

/**
 * An upstream's rate limits. With several upstreams on one state store the bucket keys carry the
 * upstream's name, so a caller's traffic to one upstream never spends its budget at another
 * (docs/upstreams.md). Keys still carry no credential.
 */
function rateLimitsOf(rl: ResolvedUpstream["rateLimit"], scope: string | undefined): RateLimitPlanner {
  const planner = plannerOf(rl);
  if (scope === undefined) return planner;
  const prefix = `rl:u:${encodeURIComponent(scope)}:`;
  return {
    failOpen: planner.failOpen,
    bucketsFor: (identity, messages) =>
      planner.bucketsFor(identity, messages).map((b) => ({ ...b, key: prefix + b.key })),
  };
}

function plannerOf(rl: ResolvedUpstream["rateLimit"]): RateLimitPlanner {
  return createRateLimitPlanner({
    ...(rl?.perPrincipal
      ? { perPrincipal: { limit: rl.perPrincipal.limit, windowMs: durationMs(rl.perPrincipal.window) } }
      : {}),
    tools: (rl?.tools ?? []).map((t) => ({ match: t.match, limit: t.limit, windowMs: durationMs(t.window) })),
    failOpen: rl?.failOpen === true,
  });
}

function warnEmptyPolicy(u: ResolvedUpstream, logger: Logger): void {
  if (u.policy?.default !== "deny") return;
  // Fail closed, but say so: the silent empty list is the bug class operators hit most.
  const empty = (["tools", "resources", "prompts"] as const).filter((k) => u.policy![k].length === 0);
  if (empty.length > 0) {
    logger.warn(
      { kinds: empty, ...(u.shorthand ? {} : { upstream: u.name }) },
      "policy: no rules for these kinds and default is deny, so callers see none of them (mcpgate policy explain shows why)",
    );
  }
}

/**
 * The identity hook as the gateway server calls it: the caller (and, for token exchange, its raw
 * token) in, headers or a stdio child's environment out; failures audited with the mount's name and
 * answered 502 by the server (nothing forwarded). Token exchanges are audited with the delegation.
 */
function identityHookFor(
  hook: IdentityHook,
  u: ResolvedUpstream,
  gate: Gate,
  idleTtlMs: number,
): ((entry: Entry) => Promise<UpstreamIdentity>) | undefined {
  if (hook.mode === "none") return undefined;
  const traced = traceUpstreamIdentity(hook);
  const stdio = u.upstream.command !== undefined;
  return async (entry) => {
    const { identity, sessionId, token, ip, requestId } = entry.admission;
    const audit = (
      type: "identity_refused" | "identity_exchanged",
      detail: Record<string, string | boolean>,
    ) =>
      gate.options.observer?.audit?.({
        type,
        time: new Date().toISOString(),
        actor: identity.displayPrefix ?? identity.principal,
        ip,
        requestId,
        ...(sessionId !== undefined ? { sessionId } : {}),
        detail: { upstream: u.name, ...detail },
      });
    // A stdio child's assertion is signed when the child starts, for it alone (not per request).
    if (stdio) return { ok: true, spawnEnv: () => hook.stdioEnv(identity, sessionId, idleTtlMs) };
    const c = await traced.credential({ identity, token, ...(sessionId !== undefined ? { sessionId } : {}) });
    if (!c.ok) {
      audit("identity_refused", {
        mode: c.audit.mode,
        reason: c.reason,
        ...(c.detail ? { class: c.detail } : {}),
        ...(c.audit.delegation ? { act: c.audit.delegation.act.sub } : {}),
      });
      return { ok: false, reason: c.reason };
    }
    // RFC 8693 §4.1: the audit trail names who acts for the caller (once per exchange, not per hit).
    if (c.audit?.delegation && c.audit.cached === false)
      audit("identity_exchanged", { mode: "token-exchange", act: c.audit.delegation.act.sub });
    return { ok: true, headers: c.headers };
  };
}

/** The shared observer, with every audit event of one upstream's gate naming it (`detail.upstream`). */
function observerFor(observer: GateObserver | undefined, name: string | undefined): GateObserver | undefined {
  if (!observer?.audit || name === undefined) return observer;
  const audit = observer.audit.bind(observer);
  return Object.assign(Object.create(observer) as GateObserver, {
    audit: (event: AuditEvent) => audit({ ...event, detail: { ...event.detail, upstream: name } }),
  });
}

/** `GET /.well-known/jwks.json`: the public signing keys, no credential (RFC 7517 JWK Set). */
function jwksRoute(identity: IdentityRuntime): RouteHandler {
  return async (req: IncomingMessage, res: ServerResponse) => {
    if ((req.url ?? "/").split("?")[0] !== "/.well-known/jwks.json") return false;
    const jwks = await identity.jwks();
    if (!jwks) return false; // nothing signs: the 404 after the routes
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return true;
    }
    res
      .writeHead(200, {
        "content-type": "application/jwk-set+json",
        // Short: a rotation published elsewhere reaches verifiers that honour the cache within a minute.
        "cache-control": "public, max-age=60",
        "access-control-allow-origin": "*",
      })
      .end(req.method === "HEAD" ? undefined : JSON.stringify(jwks));
    return true;
  };
}

/**
 * The resource URI of every mount (RFC 8707): the shorthand's `publicUrl`, or origin + each path.
 *
 * @example mountResources(config, "https://mcp.example.com") // ["https://mcp.example.com/notes/mcp", …]
 */
export function mountResources(config: GatewayConfig, publicUrl: string): string[] {
  const origin = new URL(publicUrl).origin;
  return resolveUpstreams(config).map((u) => resourceOf(u, publicUrl, origin));
}

function resourceOf(u: ResolvedUpstream, publicUrl: string, origin: string): string {
  return u.shorthand ? publicUrl : new URL(u.path, origin).href;
}

/**
 * Build one mount per upstream (or the shorthand's one), the identity runtime and the JWKS route.
 *
 * @example const { mounts, routes } = await buildMounts(config, ctx);
 */
export async function buildMounts(config: GatewayConfig, ctx: MountContext): Promise<BuiltMounts> {
  const resolved = resolveUpstreams(config);
  if (resolved.length === 0) throw noUpstream();
  const origin = new URL(ctx.publicUrl).origin;
  const identity = await createIdentityRuntime({
    issuer: config.identity?.issuer ?? origin,
    ...(config.identity?.ttl !== undefined ? { ttlMs: durationMs(config.identity.ttl) } : {}),
    keyStoreLocation: signingKeyLocation(config),
    ...(config.identity?.alg ? { alg: config.identity.alg } : {}),
    ...(ctx.env[SIGNING_KEY_SECRET_ENV] ? { keySecret: ctx.env[SIGNING_KEY_SECRET_ENV] } : {}),
    upstreams: resolved.map((u) => ({
      name: u.name,
      ...(u.upstream.url ? { url: u.upstream.url } : {}),
      ...u.identity,
    })),
  });
  const issuers = configuredIssuers(config);
  const idleTtlMs = durationMs(config.sessions.idleTtl);
  // Memory for answers clients have not taken yet: one budget for every mount (one process's memory).
  const answerBudget = createAnswerBudget({
    perCaller: config.limits.answerBufferPerCaller,
    total: config.limits.answerBuffer,
  });
  const mounts: Mount[] = [];
  try {
    for (const u of resolved) {
      // Each upstream is its own resource: origin + path (RFC 8707/9728); the shorthand keeps publicUrl.
      const resource = resourceOf(u, ctx.publicUrl, origin);
      let verifiers = ctx.verifiers;
      if (!u.shorthand && ctx.jwtVerifier && issuers.length > 0) {
        const own = createJwtVerifier(
          jwtVerifierOptions(issuers, resource, ctx.onJwksFetch ? { onJwksFetch: ctx.onJwksFetch } : {}),
        );
        verifiers = ctx.verifiers.map((v) => (v === ctx.jwtVerifier ? own : v));
      }
      // A token the gateway issued for one upstream is refused at another (RFC 8707 audience).
      const asVerifier = ctx.ownTokenVerifier;
      if (!u.shorthand && asVerifier) {
        const narrowed = asVerifier.forResource(resource);
        verifiers = verifiers.map((v) => (v === asVerifier ? narrowed : v));
      }
      const observer = observerFor(ctx.gateOptions.observer, u.shorthand ? undefined : u.name);
      const gate = createGate({
        ...ctx.gateOptions,
        ...(observer ? { observer } : {}),
        verifiers,
        publicUrl: resource,
        ...(u.policy
          ? {
              authorizer: compilePolicy({
                ...u.policy,
                // The 401 `scope`: least privilege at first login (issue 14 item 7).
                ...(config.auth.challengeScopes ? { challengeScopes: config.auth.challengeScopes } : {}),
              }),
            }
          : {}),
        rateLimits: rateLimitsOf(u.rateLimit, u.shorthand ? undefined : u.name),
        // Sessions minted behind one upstream are unknown (404) behind another, even on one store.
        ...(u.shorthand ? {} : { sessionScope: u.name }),
      });
      warnEmptyPolicy(u, ctx.logger);
      const upstream = createUpstream(u, config, ctx);
      const hook = identityHookFor(identity.hook(u.name), u, gate, idleTtlMs);
      // Tracing (docs/tracing.md): an upstream CLIENT span per forward, traceparent to HTTP and stdio.
      const aroundForward = traceForward({
        name: u.name,
        transport: u.upstream.url ? "http" : "stdio",
        ...(u.upstream.url ? { url: u.upstream.url } : {}),
      });
      mounts.push({
        name: u.name,
        path: u.path,
        gate,
        upstream,
        aroundForward,
        owner: { answerBudget },
        ...(hook ? { identity: hook } : {}),
      });
    }
  } catch (err) {
    await Promise.all(mounts.map((m) => m.upstream.close().catch(() => {})));
    await identity.close().catch(() => {});
    throw err;
  }
  return {
    mounts,
    routes: [jwksRoute(identity)],
    identity,
    close: () => identity.close(),
  };
}
