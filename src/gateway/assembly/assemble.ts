import type { AddressInfo } from "node:net";
import { compilePolicy } from "../../authz/policy.js";
import { createRateLimitPlanner } from "../../authz/rate-limit-plan.js";
import { durationMs, type GatewayConfig } from "../../config.js";
import { McpGateError } from "../../core/errors.js";
import { createGate, type Gate } from "../../gate/gate.js";
import { createLogger, type Logger } from "../../observe/logger.js";
import { findFreePort } from "../free-port.js";
import { createHttpUpstream } from "../http-upstream.js";
import { createGatewayServer, type GatewayServer, type Mount, type RouteHandler } from "../server.js";
import { createStdioUpstream } from "../stdio/stdio-upstream.js";
import type { Upstream } from "../upstream.js";
import { buildAuthServer } from "./authserver.js";
import { buildObservability, type Observability } from "./observability.js";
import { buildState } from "./shared-state.js";
import { buildVerifiers } from "./verifiers.js";

export interface StartGatewayOptions {
  config: GatewayConfig;
  env?: NodeJS.ProcessEnv;
  /** Logger to use (tests pass one writing to a captured stream). */
  logger?: Logger;
}

export interface RunningGateway {
  url: string;
  publicUrl: string;
  address: AddressInfo;
  gate: Gate;
  server: GatewayServer;
  /** The upstream relay (a `StdioUpstream` for `upstream.command`: tests read child PIDs from it). */
  upstream: Upstream;
  logger: Logger;
  /** Audit trail, metrics (and their listener's `metricsServer.url`), alerts and the guard. */
  observability: Observability;
  close(): Promise<void>;
}

function createUpstream(config: GatewayConfig, logger: Logger, env: NodeJS.ProcessEnv): Upstream {
  const up = config.upstream;
  if (up?.url) {
    return createHttpUpstream({ url: up.url, headers: { ...up.headers }, timeoutMs: durationMs(up.timeout) });
  }
  if (up?.command) {
    // docs/stdio.md: one child per session; only allow-listed variables reach it.
    return createStdioUpstream({
      command: [...up.command],
      logger,
      parentEnv: env,
      ...(up.env ? { env: { ...up.env } } : {}),
      ...(up.envAllow ? { envAllow: [...up.envAllow] } : {}),
      ...(up.maxChildren ? { maxChildren: up.maxChildren } : {}),
      ...(up.poolSize ? { poolSize: up.poolSize } : {}),
      ...(up.killGrace !== undefined ? { killGraceMs: durationMs(up.killGrace) } : {}),
      idleTtlMs: durationMs(config.sessions.idleTtl),
      initTimeoutMs: durationMs(up.timeout),
    });
  }
  throw new McpGateError(
    "ERR_CONFIG_INVALID",
    'upstream: set upstream.url (or --upstream URL) or upstream.command (or --stdio "CMD ARGS")',
  );
}

/**
 * Assemble and start the gateway described by a validated configuration.
 *
 * @example const gw = await startGateway({ config: validateConfig({ upstream: { url } }) });
 */
export async function startGateway(options: StartGatewayOptions): Promise<RunningGateway> {
  const { config } = options;
  const env = options.env ?? process.env;
  const logger =
    options.logger ??
    createLogger({ level: config.logging.level, redactHeaders: [...config.logging.redactHeaders] });
  const host = config.listen.host;
  const port = config.listen.port === 0 ? await findFreePort(host) : config.listen.port;
  const urlHost = host.includes(":") ? `[${host}]` : host;
  const publicUrl = config.publicUrl ?? `http://${urlHost}:${port}${config.mcpPath}`;
  // Audit, metrics, alerts and the credential-guessing guard (docs/observability.md).
  let gateRef: Gate | undefined;
  const obs = await buildObservability(config, {
    logger,
    sessionCount: () => gateRef?.options.state?.sessionCount?.(),
  });
  const built = await buildVerifiers(config, {
    publicUrl,
    env,
    onJwksFetch: (outcome) => obs.observer.jwksFetch(outcome),
  }).catch(async (err) => {
    await obs.close();
    throw err;
  });
  // The gateway's own authorization server (DESIGN.md §9, `authServer`): its token verifier joins
  // the others (so the PRM lists its issuer), its endpoints are a route below.
  const authServer = await buildAuthServer(config, {
    publicUrl,
    resources: [publicUrl],
    scopes: config.policy ? compilePolicy(config.policy).scopesSupported() : [],
    verifiers: built.verifiers,
    ...(obs.guard ? { guard: obs.guard } : {}),
    trustProxy: config.guard?.trustProxy === true,
  }).catch(async (err) => {
    await built.close();
    await obs.close();
    throw err;
  });
  if (authServer.server) built.verifiers.unshift(authServer.server.verifier);
  // Session bindings and rate-limit buckets: memory, or Redis when `state.redis` is set.
  const shared = await buildState(config, { verifiers: built.verifiers, logger }).catch(async (err) => {
    await authServer.close();
    await built.close();
    throw err;
  });
  const upstream = createUpstream(config, logger, env);
  const gate = createGate({
    verifiers: built.verifiers,
    publicUrl,
    maxBodyBytes: config.limits.maxBody,
    realm: config.auth.realm,
    guard: obs.guard,
    observer: obs.observer,
    sessionIdleTtlMs: durationMs(config.sessions.idleTtl),
    state: shared.state,
    ...(config.origins ? { origins: [...config.origins] } : {}),
    ...(config.policy ? { authorizer: compilePolicy(config.policy) } : {}),
    rateLimits: createRateLimitPlanner({
      ...(config.rateLimit?.perPrincipal
        ? {
            perPrincipal: {
              limit: config.rateLimit.perPrincipal.limit,
              windowMs: durationMs(config.rateLimit.perPrincipal.window),
            },
          }
        : {}),
      tools: (config.rateLimit?.tools ?? []).map((t) => ({
        match: t.match,
        limit: t.limit,
        windowMs: durationMs(t.window),
      })),
      failOpen: config.rateLimit?.failOpen === true,
    }),
  });
  gateRef = gate;
  if (config.policy && config.policy.default === "deny") {
    // Fail closed, but say so: the silent empty list is the bug class operators hit most.
    const empty = (["tools", "resources", "prompts"] as const).filter((k) => config.policy![k].length === 0);
    if (empty.length > 0) {
      logger.warn(
        { kinds: empty },
        "policy: no rules for these kinds and default is deny, so callers see none of them (mcpgate policy explain shows why)",
      );
    }
  }
  if (built.verifiers.length === 0) {
    logger.error(
      "no credential is configured (MCP_API_KEY, auth.apiKeys or auth.jwt): every request will be refused with 500",
    );
  }
  // The MCP endpoints: the one-upstream config is one mount at the publicUrl's path. Each mount has
  // its own gate (sessions scoped by `sessionScope` when several share a state store), upstream,
  // and optional upstream identity hook.
  const mounts: Mount[] = [
    {
      name: "default",
      path: config.mcpPath,
      gate,
      upstream,
    },
  ];
  // Routes other than the MCP endpoints (JWKS, the authorization server), tried before the 404.
  const routes: RouteHandler[] = [];
  if (authServer.server) {
    const as = authServer.server;
    routes.push((req, res) => as.handle(req, res));
  }
  const server = createGatewayServer({
    mounts,
    routes,
    logger,
    headersTimeoutMs: durationMs(config.limits.headersTimeout),
    requestTimeoutMs: durationMs(config.limits.requestTimeout),
    shutdownGraceMs: durationMs(config.limits.shutdownGrace),
  });
  let address: AddressInfo;
  try {
    address = await server.listen(port, host);
  } catch (err) {
    // Nothing may stay open when the gateway cannot start (library callers keep running).
    await upstream.close().catch(() => {});
    await obs.close().catch(() => {});
    await shared.close().catch(() => {});
    await authServer.close().catch(() => {});
    await built.close().catch(() => {});
    throw err;
  }
  return {
    url: `http://${urlHost}:${address.port}${config.mcpPath}`,
    publicUrl,
    address,
    gate,
    server,
    upstream,
    logger,
    observability: obs,
    async close() {
      await server.close();
      await obs.close();
      await shared.close();
      await authServer.close();
      await built.close();
    },
  };
}
