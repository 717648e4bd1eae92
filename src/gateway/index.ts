/**
 * `mcpgate/gateway`: the gateway as a library — start it from a configuration, or assemble the
 * server from parts (a gate, mounts, upstreams).
 *
 * @example
 * import { startGateway, validateConfig } from "mcpgate/gateway";
 * const gw = await startGateway({ config: validateConfig({ upstream: { url: "http://127.0.0.1:3000/mcp" } }) });
 */
export { type GatewayConfig, type GatewayConfigInput, loadConfigFile, validateConfig } from "../config.js";
export { type RunningGateway, type StartGatewayOptions, startGateway } from "./assembly/assemble.js";
export { createHttpUpstream, type HttpUpstreamOptions } from "./http-upstream.js";
export { createGatewayServer, type GatewayServer, type GatewayServerOptions } from "./server.js";
export {
  createStdioUpstream,
  type StdioUpstream,
  type StdioUpstreamOptions,
} from "./stdio/stdio-upstream.js";
export type { Upstream } from "./upstream.js";
