import type { AddressInfo } from "node:net";
import { durationMs, type GatewayConfig } from "../config.js";
import { McpGateError } from "../core/errors.js";
import { createGate, type Gate } from "../gate/gate.js";
import { createLogger, type Logger } from "../observe/logger.js";
import { findFreePort } from "./free-port.js";
import { createHttpUpstream } from "./http-upstream.js";
import { createGatewayServer, type GatewayServer } from "./server.js";
import type { Upstream } from "./upstream.js";
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
  logger: Logger;
  close(): Promise<void>;
}

function createUpstream(config: GatewayConfig): Upstream {
  const up = config.upstream;
  if (up?.url) {
    return createHttpUpstream({ url: up.url, headers: { ...up.headers }, timeoutMs: durationMs(up.timeout) });
  }
  throw new McpGateError("ERR_CONFIG_INVALID", "upstream: set upstream.url (or --upstream URL)");
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
  const built = await buildVerifiers(config, { publicUrl, env });
  const upstream = createUpstream(config);
  const gate = createGate({
    verifiers: built.verifiers,
    publicUrl,
    maxBodyBytes: config.limits.maxBody,
    realm: config.auth.realm,
    sessionIdleTtlMs: durationMs(config.sessions.idleTtl),
    ...(config.origins ? { origins: [...config.origins] } : {}),
  });
  if (built.verifiers.length === 0) {
    logger.error(
      "no credential is configured (MCP_API_KEY, auth.apiKeys or auth.jwt): every request will be refused with 500",
    );
  }
  const server = createGatewayServer({
    gate,
    upstream,
    logger,
    mcpPath: config.mcpPath,
    headersTimeoutMs: durationMs(config.limits.headersTimeout),
    requestTimeoutMs: durationMs(config.limits.requestTimeout),
    shutdownGraceMs: durationMs(config.limits.shutdownGrace),
  });
  const address = await server.listen(port, host);
  return {
    url: `http://${urlHost}:${address.port}${config.mcpPath}`,
    publicUrl,
    address,
    gate,
    server,
    logger,
    async close() {
      await server.close();
      await built.close();
    },
  };
}
