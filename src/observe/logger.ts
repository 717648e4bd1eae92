import { createRequire } from "node:module";
import { type DestinationStream, type Logger, pino } from "pino";

export interface LoggerOptions {
  level?: string;
  /** Extra header names (lower-case) to redact, e.g. a custom secret header. */
  redactHeaders?: string[];
  /** Write here instead of stdout (tests capture output this way). */
  destination?: DestinationStream;
  /** Pretty output (pino-pretty) — default: when stdout is a TTY and pino-pretty is installed. */
  pretty?: boolean;
}

/** Paths redacted by the logger itself, so no call site has to remember (STYLE.md rule 5). */
export const REDACT_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  "req.headers['proxy-authorization']",
  "req.headers['x-api-key']",
  "res.headers['set-cookie']",
  "headers.authorization",
  "headers.cookie",
  "headers['proxy-authorization']",
  "headers['x-api-key']",
  "authorization",
  "token",
  "key",
  "secret",
  "password",
  "clientSecret",
  "*.token",
  "*.key",
  "*.secret",
  "*.password",
  "*.clientSecret",
];

/**
 * The one logger factory. Secrets are removed by pino's `redact` at serialization time.
 *
 * @example const log = createLogger({ level: "info" }); log.info({ requestId }, "request");
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const extra = (options.redactHeaders ?? []).flatMap((h) => {
    const name = h.toLowerCase().replace(/'/g, "");
    return [`req.headers['${name}']`, `headers['${name}']`];
  });
  const base = {
    level: options.level ?? "info",
    redact: { paths: [...REDACT_PATHS, ...extra], censor: "[redacted]" },
    base: { service: "mcpgate" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (options.destination) return pino(base, options.destination);
  if (options.pretty ?? process.stdout.isTTY) {
    try {
      createRequire(import.meta.url).resolve("pino-pretty");
      return pino({ ...base, transport: { target: "pino-pretty", options: { colorize: true } } });
    } catch {
      // pino-pretty is a dev dependency; without it we write JSON lines.
    }
  }
  return pino(base);
}

export type { Logger };
