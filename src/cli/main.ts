#!/usr/bin/env node
import { Command } from "commander";
import { registerConfigCommand } from "./config-check.js";
import { registerDemoCommand } from "./demo.js";
import { registerKeysCommand } from "./keys.js";
import { registerMonitorCommand } from "./monitor.js";
import { registerPolicyCommand } from "./policy.js";
import { registerProbeCommand } from "./probe.js";
import { registerServeCommand } from "./serve.js";
import { reportAndExit } from "./util.js";

/**
 * The `mcpgate` command line (DESIGN.md §6). Each command lives in its own file and registers
 * itself here.
 */
const program = new Command("mcpgate")
  .description("Authentication and authorization for MCP servers")
  // DESIGN.md §6: bad flags are usage errors, exit code 2.
  .exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

registerServeCommand(program);
registerDemoCommand(program);
registerConfigCommand(program);
registerKeysCommand(program);
registerProbeCommand(program);
registerPolicyCommand(program);
registerMonitorCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  reportAndExit(err);
}
