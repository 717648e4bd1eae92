import type { Command } from "commander";
import { type GatewayConfig, type GatewayConfigInput, loadConfigFile, validateConfig } from "../config.js";
import { startGateway } from "../gateway/assembly/assemble.js";
import { flushLogger, type Logger } from "../observe/logger.js";
import { fail, parsePort } from "./util.js";

interface ServeFlags {
  config?: string;
  upstream?: string;
  stdio?: string;
  host?: string;
  port?: string;
  logLevel?: string;
}

/** Split a --stdio "CMD ARGS" string into argv, honouring simple quotes. */
export function splitCommand(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** Merge command-line flags over the file (flags win, DESIGN.md §6). */
export function resolveServeConfig(flags: ServeFlags, env: NodeJS.ProcessEnv): GatewayConfig {
  const base: GatewayConfig | undefined = flags.config ? loadConfigFile(flags.config, env) : undefined;
  const raw = (base ? structuredClone(base) : {}) as GatewayConfigInput & Record<string, unknown>;
  if (flags.upstream && flags.stdio) fail("use either --upstream or --stdio, not both");
  if ((flags.upstream || flags.stdio) && raw.upstreams)
    fail("--upstream and --stdio set the one upstream; this configuration has upstreams: (edit the file)");
  if (flags.upstream) raw.upstream = { ...(raw.upstream ?? {}), url: flags.upstream, command: undefined };
  if (flags.stdio) {
    const argv = splitCommand(flags.stdio);
    if (argv.length === 0) fail("--stdio needs a command");
    raw.upstream = { ...(raw.upstream ?? {}), command: argv, url: undefined };
  }
  if (flags.host || flags.port) {
    raw.listen = {
      ...(raw.listen ?? {}),
      ...(flags.host ? { host: flags.host } : {}),
      ...(flags.port ? { port: parsePort(flags.port) } : {}),
    };
  }
  if (flags.logLevel) raw.logging = { ...(raw.logging ?? {}), level: flags.logLevel as "info" };
  if (!raw.upstream?.url && !raw.upstream?.command && !raw.upstreams?.length)
    fail(
      'no upstream: pass --upstream URL or --stdio "CMD ARGS", or set upstream (or upstreams) in --config',
    );
  return validateConfig(raw, null);
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("Run the authenticating gateway in front of an MCP server")
    .option("--config <file>", "configuration file (YAML or JSON)")
    .option("--upstream <url>", "upstream MCP server URL (Streamable HTTP)")
    .option("--stdio <command>", 'run a stdio MCP server per session, e.g. "npx -y some-mcp-server"')
    .option("--host <host>", "listen address (default 127.0.0.1)")
    .option("--port <port>", "listen port (default 8080)")
    .option("--log-level <level>", "trace, debug, info (default), warn, error, fatal or silent")
    .action(async (flags: ServeFlags) => {
      const config = resolveServeConfig(flags, process.env);
      const gw = await startGateway({ config });
      gw.logger.info({ url: gw.url, publicUrl: gw.publicUrl }, "mcpgate listening");
      process.stdout.isTTY && process.stdout.write(`mcpgate listening on ${gw.url}\n`);
      installShutdown(gw.close, gw.logger);
    });
}

/** SIGTERM/SIGINT: stop accepting, finish in-flight requests (bounded), exit 0. */
export function installShutdown(close: () => Promise<void>, logger: Logger): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal} received, shutting down`);
    close().then(
      () => flushLogger(logger).then(() => process.exit(0)),
      (err) => {
        logger.error({ err: (err as Error).message }, "shutdown failed");
        void flushLogger(logger).then(() => process.exit(1));
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}
