import type { AddressInfo } from "node:net";
import { compilePolicy } from "../../authz/policy.js";
import { durationMs, type GatewayConfig } from "../../config.js";
import { isoNow } from "../../core/clock.js";
import type { StateStore } from "../../core/contracts.js";
import type { Gate } from "../../gate/gate.js";
import { createLogger, type Logger } from "../../observe/logger.js";
import { SIGNING_KEY_SECRET_ENV } from "../../stores/signing-key-seal.js";
import { findFreePort } from "../free-port.js";
import { createGatewayServer, type GatewayServer, type Mount, type RouteHandler } from "../server.js";
import { resolveTracing } from "../tracing-config.js";
import { startTracing } from "../tracing-sdk.js";
import type { Upstream } from "../upstream.js";
import { buildAuthServer } from "./authserver.js";
import { buildObservability, type Observability } from "./observability.js";
import { buildState } from "./shared-state.js";
import { buildMounts, mountResources } from "./upstreams.js";
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
  // Nothing may stay open when the gateway cannot start (library callers keep running): each part
  // built is closed, last built first, if a later step fails.
  const opened: Array<() => Promise<unknown>> = [];
  const step = async <T extends { close(): Promise<unknown> }>(building: () => Promise<T>): Promise<T> => {
    let part: T;
    try {
      part = await building();
    } catch (err) {
      // A close that throws at once must not skip the others.
      for (const close of opened.reverse())
        await Promise.resolve()
          .then(close)
          .catch(() => {});
      throw err;
    }
    opened.push(() => part.close());
    return part;
  };
  // Audit, metrics, alerts and the credential-guessing guard (docs/observability.md).
  let gateRef: Gate | undefined;
  const obs = await step(() =>
    buildObservability(config, { logger, sessionCount: () => gateRef?.options.state?.sessionCount?.() }),
  );
  const built = await step(() =>
    buildVerifiers(config, { publicUrl, env, onJwksFetch: (outcome) => obs.observer.jwksFetch(outcome) }),
  );
  /** The shared state store, built below (the authorization server's registration budgets use it). */
  let sharedState: StateStore | undefined;
  // The gateway's own authorization server (DESIGN.md §9, `authServer`): its token verifier joins
  // the others (so the PRM lists its issuer), its endpoints are a route below.
  const authServer = await step(() =>
    buildAuthServer(config, {
      publicUrl,
      resources: mountResources(config, publicUrl),
      scopes: config.policy ? compilePolicy(config.policy).scopesSupported() : [],
      verifiers: built.verifiers,
      ...(obs.guard ? { guard: obs.guard } : {}),
      trustProxy: config.guard?.trustProxy === true,
      ...(env[SIGNING_KEY_SECRET_ENV] ? { signingKeySecret: env[SIGNING_KEY_SECRET_ENV] } : {}),
      audit: (event) => obs.observer.audit({ time: isoNow(), ...event }),
      sharedState: () => sharedState,
      logger,
    }),
  );
  if (authServer.server) built.verifiers.unshift(authServer.server.verifier);
  // Session bindings and rate-limit buckets: memory, or Redis when `state.redis` is set.
  const shared = await step(() => buildState(config, { verifiers: built.verifiers, logger }));
  sharedState = shared.state;
  // The MCP endpoints (upstreams.ts): one mount per upstream — its gate (policy, rate limit, sessions
  // scoped to it, its resource URI as JWT audience and PRM), its relay and its identity hook — or
  // the one-upstream config as one mount at mcpPath.
  const built2 = await step(() =>
    buildMounts(config, {
      publicUrl,
      env,
      logger,
      verifiers: built.verifiers,
      ...(built.jwt ? { jwtVerifier: built.jwt } : {}),
      ...(authServer.server ? { ownTokenVerifier: authServer.server.verifier } : {}),
      onJwksFetch: (outcome) => obs.observer.jwksFetch(outcome),
      gateOptions: {
        maxBodyBytes: config.limits.maxBody,
        realm: config.auth.realm,
        guard: obs.guard,
        observer: obs.observer,
        sessionIdleTtlMs: durationMs(config.sessions.idleTtl),
        state: shared.state,
        watchers: shared.watchers,
        ...(config.origins ? { origins: [...config.origins] } : {}),
      },
    }),
  );
  const mounts: Mount[] = built2.mounts;
  const gate = mounts[0]!.gate;
  const upstream = mounts[0]!.upstream;
  gateRef = gate;
  if (built.verifiers.length === 0) {
    logger.error(
      "no credential is configured (MCP_API_KEY, auth.apiKeys or auth.jwt): every request will be refused with 500",
    );
  }
  // Routes other than the MCP endpoints (JWKS, the authorization server), tried before the 404.
  const routes: RouteHandler[] = [...built2.routes];
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
  // The upstreams (a stdio upstream's spare child is running already).
  opened.push(() => Promise.all(mounts.map((m) => m.upstream.close())));
  // Tracing (docs/tracing.md): the SDK only when `tracing:` or an OTEL_* variable asks for it. It is
  // registered before the port opens, so the first request a client sends is traced too; shut down
  // (flushed, bounded) by close().
  const tracing = await step(async () => {
    const t = await startTracing(resolveTracing(config.tracing, env), logger);
    return { close: () => t.shutdown() };
  });
  const { address } = await step(async () => ({
    address: await server.listen(port, host),
    close: () => server.close(),
  }));
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
      await tracing.close();
      await obs.close();
      await shared.close();
      await authServer.close();
      await built2.close();
      await built.close();
    },
  };
}
