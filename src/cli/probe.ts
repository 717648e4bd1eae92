import type { Command } from "commander";
import { parseDuration } from "../core/duration.js";
import { type ProbeResult, probeEndpoint } from "../probe/index.js";

interface ProbeFlags {
  key?: string;
  header: string[];
  timeout: string;
  json?: boolean;
}

/**
 * `mcpgate probe URL [--key KEY] [--header "K: V"] [--timeout 10s] [--json]` (DESIGN.md §6).
 * Exit 0 when up, 1 for any other status, 2 for a usage error.
 *
 * @example
 * const program = new Command("mcpgate");
 * registerProbeCommand(program);
 * await program.parseAsync(["probe", "http://127.0.0.1:8080/mcp", "--json"], { from: "user" });
 */
export function registerProbeCommand(program: Command): Command {
  return program
    .command("probe")
    .description("check that an MCP endpoint is up, through its authentication, and say why not")
    .argument("<url>", "the MCP endpoint, e.g. https://mcp.example.com/mcp")
    .option("--key <key>", "probe key sent as a Bearer credential (default: $MCPGATE_PROBE_KEY)")
    .option("--header <header>", 'extra request header "Name: value" (repeatable)', collect, [])
    .option("--timeout <duration>", "deadline for the whole check", "10s")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      "\nExit status: 0 up, 1 down (auth_rejected, server_error, timeout, unreachable, protocol_error), 2 usage error.",
    )
    .action(async function (this: Command, url: string, flags: ProbeFlags) {
      const usage = (message: string): never =>
        this.error(`error: ${message}`, { exitCode: 2, code: "mcpgate.usage" });
      let timeoutMs = 0;
      try {
        timeoutMs = parseDuration(flags.timeout);
      } catch {
        usage(`invalid --timeout "${flags.timeout.slice(0, 20)}": use e.g. 500ms, 10s, 1m`);
      }
      if (timeoutMs <= 0) usage("--timeout must be greater than zero");
      const headers: Record<string, string> = {};
      for (const h of flags.header) {
        const i = h.indexOf(":");
        if (i <= 0) usage(`invalid --header "${h.slice(0, 40)}": use "Name: value"`);
        headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
      }
      const key = flags.key ?? (process.env.MCPGATE_PROBE_KEY || undefined);
      let result: ProbeResult;
      try {
        result = await probeEndpoint(url, { key, headers, timeoutMs });
      } catch (err) {
        // probeEndpoint throws only TypeError for a bad URL, key or header: usage errors.
        if (err instanceof TypeError) return usage(err.message.replace(/^probeEndpoint: /, ""));
        throw err;
      }
      process.stdout.write(flags.json ? `${JSON.stringify(result, null, 2)}\n` : formatProbeResult(result));
      process.exitCode = result.status === "up" ? 0 : 1;
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * A short readable table of one probe result, for terminals.
 *
 * @example process.stdout.write(formatProbeResult(await probeEndpoint(url)));
 */
export function formatProbeResult(r: ProbeResult): string {
  const lines = [
    `endpoint   ${r.url}`,
    `status     ${r.status}${r.httpStatus ? ` (HTTP ${r.httpStatus})` : ""}`,
  ];
  if (r.error) lines.push(`error      ${r.error}`);
  lines.push(`protocol   ${r.protocolVersion ?? "-"}`);
  lines.push(`challenge  ${r.challenge}${challengeNote(r)}`);
  lines.push(`latency    ${r.latencyMs.toFixed(1)} ms`);
  lines.push(`tools      ${r.tools ?? "-"}${r.schemaHash ? `  (schema ${r.schemaHash.slice(0, 12)})` : ""}`);
  lines.push("");
  lines.push(`${"step".padEnd(17)}${"http".padStart(5)}${"latency".padStart(12)}  ok`);
  for (const s of r.steps) {
    const http = s.httpStatus ? String(s.httpStatus) : "-";
    lines.push(
      `${s.name.padEnd(17)}${http.padStart(5)}${`${s.latencyMs.toFixed(1)} ms`.padStart(12)}  ${s.ok ? "yes" : "NO"}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

function challengeNote(r: ProbeResult): string {
  if (r.challenge === "missing") return "  (refused without a WWW-Authenticate challenge)";
  if (r.challenge === "none" && (r.steps[0]?.httpStatus ?? 0) > 0)
    return "  (the endpoint answered without asking for credentials)";
  return "";
}
