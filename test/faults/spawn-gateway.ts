import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findFreePort } from "../../src/gateway/free-port.js";

const CLI = join(import.meta.dirname, "../../src/cli/main.ts");

/** A `mcpgate serve` child process on 127.0.0.1:<free port>. */
export interface SpawnedGateway {
  child: ChildProcess;
  port: number;
  url: string;
  /** Everything the process wrote (stdout + stderr). */
  output(): string;
  /** Resident set size of the process in MiB (from /proc). */
  rssMiB(): number;
  /** Open file descriptors of the process (sockets included), from /proc. */
  openFds(): number;
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>;
  stop(): Promise<void>;
}

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * Spawn `node --import tsx src/cli/main.ts serve --config <file>` with the given configuration
 * (listen is forced to 127.0.0.1:<free port>) and wait until it accepts connections.
 *
 * @example const gw = await spawnGateway({ upstream: { url } }, { MCP_API_KEY: key });
 */
export async function spawnGateway(
  config: Record<string, unknown>,
  env: Record<string, string>,
): Promise<SpawnedGateway> {
  const port = await findFreePort("127.0.0.1");
  const file = join(tmpdir(), `mcpgate-fault-${process.pid}-${port}.json`);
  writeFileSync(file, JSON.stringify({ ...config, listen: { host: "127.0.0.1", port } }));
  const child = spawn(process.execPath, ["--import", "tsx", CLI, "serve", "--config", file], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => {
    out += d;
  });
  child.stderr!.on("data", (d) => {
    out += d;
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
  const deadline = Date.now() + 20_000;
  while (!(await portOpen(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`mcpgate serve did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    port,
    url: `http://127.0.0.1:${port}/mcp`,
    output: () => out,
    rssMiB() {
      const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
      return kb / 1024;
    },
    openFds: () => readdirSync(`/proc/${child.pid}/fd`).length,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}
