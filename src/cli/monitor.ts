import type { Command } from "commander";
import { isMcpGateError } from "../core/errors.js";
import {
  createMonitor,
  type HistoryStore,
  loadMonitorConfig,
  type MonitorConfig,
  type MonitorSnapshot,
  openHistoryStore,
  startStatusServer,
} from "../probe/index.js";

interface MonitorFlags {
  config?: string;
  once?: boolean;
  json?: boolean;
}

/**
 * `mcpgate monitor [--config FILE] [--once] [--json]`: probe the configured targets on schedule,
 * keep history, alert, and serve the status page, `/api/status` and `/metrics` (docs/monitoring.md).
 *
 * @example
 * registerMonitorCommand(program);
 * // mcpgate monitor --config monitor.yaml
 */
export function registerMonitorCommand(program: Command): Command {
  return program
    .command("monitor")
    .description("probe MCP endpoints on schedule; status page, history, alerts and metrics")
    .option(
      "--config <file>",
      "monitor configuration, YAML or JSON (default: $MCPGATE_MONITOR_CONFIG or ./mcpgate-monitor.yaml)",
    )
    .option("--once", "probe every target once, print the result and exit (0 all up, 1 otherwise)")
    .option("--json", "with --once: print the status as JSON")
    .action(async function (this: Command, flags: MonitorFlags) {
      const file = flags.config ?? process.env.MCPGATE_MONITOR_CONFIG ?? "./mcpgate-monitor.yaml";
      let config: MonitorConfig;
      let history: HistoryStore;
      try {
        config = loadMonitorConfig(file);
        history = await openHistoryStore(config.history);
      } catch (err) {
        if (isMcpGateError(err))
          return this.error(`error: ${err.message}`, { exitCode: 2, code: "mcpgate.usage" });
        throw err;
      }
      const log = (m: string) => process.stderr.write(`mcpgate monitor: ${m}\n`);
      const monitor = createMonitor({ config, history, log });
      if (flags.once) {
        await monitor.runOnce();
        const snap = await monitor.snapshot();
        process.stdout.write(flags.json ? `${JSON.stringify(snap, null, 2)}\n` : formatSnapshot(snap));
        await Promise.race([monitor.flushAlerts(), new Promise((r) => setTimeout(r, 10_000).unref())]);
        await history.close();
        process.exitCode = snap.targets.every((t) => t.status === "up") ? 0 : 1;
        return;
      }
      const status = await startStatusServer(monitor, config.listen);
      await monitor.start();
      log(`${config.targets.length} target(s); status page ${status.url}`);
      await new Promise<void>((resolve) => {
        const shutdown = () => {
          process.off("SIGINT", shutdown);
          process.off("SIGTERM", shutdown);
          resolve();
        };
        process.on("SIGINT", shutdown);
        process.on("SIGTERM", shutdown);
      });
      await monitor.stop();
      await Promise.race([monitor.flushAlerts(), new Promise((r) => setTimeout(r, 5000).unref())]);
      await status.close();
      await history.close();
    });
}

function formatSnapshot(snap: MonitorSnapshot): string {
  const rows = snap.targets.map((t) => {
    const latency = t.latencyMs === null ? "-" : `${Math.round(t.latencyMs)} ms`;
    return `${t.name.padEnd(20)} ${t.status.padEnd(15)} ${latency.padStart(8)}  ${t.error ?? ""}`.trimEnd();
  });
  return `${"target".padEnd(20)} ${"status".padEnd(15)} ${"latency".padStart(8)}\n${rows.join("\n")}\n`;
}
