import { Writable } from "node:stream";
import { type GatewayConfigInput, validateConfig } from "../../src/config.js";
import { type RunningGateway, startGateway } from "../../src/gateway/assembly/assemble.js";
import { createLogger } from "../../src/observe/logger.js";

export interface TestGateway extends RunningGateway {
  /** Every log line the gateway wrote, as text. */
  logs: string[];
}

/** A writable stream collecting log lines (the logger's destination in tests). */
export function captureStream(lines: string[]): Writable {
  return new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split("\n")) if (line) lines.push(line);
      cb();
    },
  });
}

/**
 * Start the real gateway in-process on 127.0.0.1:<random> with a captured logger.
 *
 * @example const gw = await startTestGateway({ upstream: { url } }, { MCP_API_KEY: key });
 */
export async function startTestGateway(
  config: GatewayConfigInput,
  env: NodeJS.ProcessEnv = {},
  level = "debug",
): Promise<TestGateway> {
  const logs: string[] = [];
  const resolved = validateConfig({ listen: { host: "127.0.0.1", port: 0 }, ...config }, env);
  const logger = createLogger({
    level,
    destination: captureStream(logs),
    redactHeaders: [...resolved.logging.redactHeaders],
  });
  const gw = await startGateway({ config: resolved, env, logger });
  return Object.assign(gw, { logs });
}
