import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import { McpGateError } from "./errors.js";

/**
 * Read and parse a configuration file: JSON for `.json`, YAML otherwise (DESIGN.md §7). Returns
 * the parsed value, not yet interpolated or validated. An unreadable file is ERR_CONFIG_NOT_FOUND
 * (`cannot read <what> <file>: <errno code>`); unparsable text is ERR_CONFIG_INVALID naming the
 * file and the first line of the parser's message. Shared by the gateway and the monitor.
 *
 * @example
 * const raw = readConfigFile("./mcpgate.yaml", "config file");
 */
export function readConfigFile(file: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new McpGateError("ERR_CONFIG_NOT_FOUND", `cannot read ${what} ${file}: ${code}`);
  }
  const json = extname(file).toLowerCase() === ".json";
  try {
    // logLevel "error": YAML warnings (e.g. on unusual tags) would otherwise print to stderr.
    return json ? JSON.parse(text) : parseYaml(text, { logLevel: "error" });
  } catch (err) {
    const first = (err as Error).message.split("\n")[0];
    throw new McpGateError("ERR_CONFIG_INVALID", `${file}: not valid ${json ? "JSON" : "YAML"}: ${first}`);
  }
}
