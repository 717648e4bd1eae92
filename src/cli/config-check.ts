import type { Command } from "commander";
import { loadConfigFile } from "../config.js";
import { resolveTracing } from "../gateway/tracing-config.js";

export function registerConfigCommand(program: Command): void {
  const config = program.command("config").description("Configuration tools");
  config
    .command("check <file>")
    .description("Validate a configuration file and print the resolved configuration")
    .option("--json", "print the resolved configuration as JSON")
    .action((file: string, flags: { json?: boolean }) => {
      const resolved = loadConfigFile(file, process.env);
      // The tracing settings as `serve` would resolve them, OTEL_* variables included.
      for (const w of resolveTracing(resolved.tracing, process.env)?.warnings ?? [])
        process.stderr.write(`warning: tracing: ${w}\n`);
      if (flags.json) process.stdout.write(`${JSON.stringify(resolved, redactSecrets, 2)}\n`);
      else process.stdout.write(`${file}: ok\n`);
    });
}

/**
 * Never print a header value or a secret from the resolved configuration: fields named like
 * secrets, every header value, and what a URL may carry (its userinfo, its query values: a Redis
 * password, a collector's key, a key some hosted server takes in its query).
 */
function redactSecrets(key: string, value: unknown): unknown {
  if (typeof value === "string" && /secret|password|token|authorization/i.test(key)) return "[redacted]";
  if (typeof value === "string" && /^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return redactUrl(value);
  // Every header value (upstream.headers, tracing.headers): a vendor's API key can sit under any name.
  if (key === "headers" && value && typeof value === "object" && !Array.isArray(value)) {
    return Object.fromEntries(Object.keys(value).map((name) => [name, "[redacted]"]));
  }
  return value;
}

/** A URL with its userinfo and query values replaced (the rest kept, to be checked by eye). */
function redactUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return "[redacted: not a URL]";
  }
  // Nothing to hide: printed as written (URL's own spelling would add a "/", reorder, escape).
  if (!u.username && !u.password && u.search === "") return raw;
  if (u.username) u.username = "redacted";
  if (u.password) u.password = "redacted";
  for (const name of [...u.searchParams.keys()]) u.searchParams.set(name, "redacted");
  return u.toString();
}
