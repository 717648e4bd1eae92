import { type ChildProcess, spawn } from "node:child_process";
import { findFreePort } from "../../src/gateway/free-port.js";

/** A private redis-server on 127.0.0.1:<free port> (no persistence) that a test may stop and start. */
export interface OwnRedis {
  port: number;
  url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

async function waitForPort(port: number, up: boolean, timeoutMs = 5000): Promise<void> {
  const { connect } = await import("node:net");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (open === up) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server on ${port} did not become ${up ? "ready" : "stopped"}`);
}

/**
 * Start a redis-server of our own (never the shared one on 6379).
 *
 * @example const r = await startOwnRedis(); … await r.stop();
 */
export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await findFreePort("127.0.0.1");
  let child: ChildProcess | undefined;
  const own: OwnRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      child = spawn(
        "redis-server",
        ["--port", String(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        { stdio: "ignore" },
      );
      await waitForPort(port, true);
    },
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null) return;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      await exited;
      await waitForPort(port, false);
    },
  };
  await own.start();
  return own;
}
