import { createRequire } from "node:module";
import { type DestinationStream, type Logger, pino } from "pino";
import { traceLogFields } from "./tracing.js";

export interface LoggerOptions {
  level?: string;
  /** Extra header names (lower-case) to redact, e.g. a custom secret header. */
  redactHeaders?: string[];
  /** Write here instead of stdout (tests capture output this way). */
  destination?: DestinationStream;
  /** Pretty output (pino-pretty) — default: when stdout is a TTY and pino-pretty is installed. */
  pretty?: boolean;
}

/** Header names whose values are credentials; redacted wherever a `headers` object is logged. */
export const SECRET_HEADERS = ["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"];

/** Field names that hold secrets when they appear at the top level or one level down. */
const SECRET_FIELDS = [
  "authorization",
  "token",
  "accessToken",
  "refreshToken",
  "idToken",
  "key",
  "apiKey",
  "secret",
  "clientSecret",
  "password",
  "pepper",
];

/** pino paths for a header in the shapes we log: `headers`, `req.headers`, `res.headers`, `*.headers`. */
function headerPaths(name: string): string[] {
  const n = name.toLowerCase().replace(/['"\\]/g, "");
  return [`headers['${n}']`, `req.headers['${n}']`, `res.headers['${n}']`, `*.headers['${n}']`];
}

/** Session ids are bearer-like handles (spec SBP "session hijacking"): logged as a short prefix only. */
const SESSION_HEADERS = ["mcp-session-id"];

/** Paths redacted by the logger itself, so no call site has to remember (STYLE.md rule 5). */
export const REDACT_PATHS: readonly string[] = Object.freeze([
  ...SECRET_HEADERS.flatMap(headerPaths),
  ...SESSION_HEADERS.flatMap(headerPaths),
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
]);

function censor(value: unknown, path: string[]): string {
  const last = path.at(-1)?.toLowerCase();
  if (last && SESSION_HEADERS.includes(last) && typeof value === "string") {
    return value.length > 8 ? `${value.slice(0, 8)}…` : "[redacted]";
  }
  return "[redacted]";
}

/**
 * The one logger factory. Secrets are removed by pino's `redact` at serialization time: the
 * credential headers (Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key), any
 * header named in `redactHeaders`, and fields named like secrets (`token`, `key`, `secret`, …).
 * Output is JSON lines; pretty (pino-pretty) when stdout is a TTY and pino-pretty is installed.
 *
 * @example const log = createLogger({ level: "info" }); log.info({ requestId }, "request");
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const extra = (options.redactHeaders ?? []).flatMap(headerPaths);
  const base = {
    level: options.level ?? "info",
    redact: { paths: [...new Set([...REDACT_PATHS, ...extra])], censor },
    base: { service: "mcpgate" },
    timestamp: pino.stdTimeFunctions.isoTime,
    // `trace_id`/`span_id` on every line written inside a traced request (docs/tracing.md).
    mixin: traceLogFields,
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
  // Asynchronous, batched writes: a synchronous write per request line cost the gateway ~10 % of its
  // CPU (bench/gateway.ts profile). Call `flushLogger` before exiting.
  const destination = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  // Lines are written in ≥ 4 KiB batches, and at the latest after a second (so a quiet gateway's
  // log is never held back for long).
  setInterval(() => destination.flush(), 1000).unref();
  return pino(base, destination);
}

/** Write out buffered log lines (before process exit). */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      logger.flush(() => resolve());
    } catch {
      resolve();
    }
  });
}

export type { Logger };
