import { createRequire } from "node:module";
import { type DestinationStream, type Logger, pino } from "pino";
import { isoNow } from "../core/clock.js";
import { createLineDestination } from "./log-destination.js";
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

/** Session ids are bearer-like handles (spec SBP "session hijacking"): logged as a short prefix only. */
const SESSION_HEADERS = ["mcp-session-id"];

/**
 * What the logger removes, in pino path notation (for documentation and tests): credential headers
 * in a `headers` object at the top level or one level down (`req.headers`, `upstream.headers`, …),
 * and secret-named fields at the top level or one level down.
 */
export const REDACT_PATHS: readonly string[] = Object.freeze([
  ...[...SECRET_HEADERS, ...SESSION_HEADERS].flatMap((n) => [`headers['${n}']`, `*.headers['${n}']`]),
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
]);

const REDACTED = "[redacted]";
const SECRET_FIELD_SET = new Set(SECRET_FIELDS);

/**
 * The redaction pass, run on every line's object just before it is serialized (pino's
 * `formatters.log`). Equivalent to pino's `redact` option with {@link REDACT_PATHS} (header names
 * matched without regard to case), at a fraction of its cost: the request line is written once per
 * request, and `redact` with wildcard paths cost the gateway ~28 µs of it (bench/profile-gateway.ts).
 * Copy on write: the caller's objects are never changed, and a line with nothing to remove is
 * passed through as it is.
 */
function createRedactor(extraHeaders: readonly string[]) {
  const secretHeaders = new Set([...SECRET_HEADERS, ...extraHeaders].map((h) => h.toLowerCase()));
  const sessionHeaders = new Set(SESSION_HEADERS);

  function scrubHeaders(headers: object): object {
    let out: Record<string, unknown> | undefined;
    for (const name of Object.keys(headers)) {
      const lower = name.toLowerCase();
      const secret = secretHeaders.has(lower);
      if (!secret && !sessionHeaders.has(lower)) continue;
      const value = (headers as Record<string, unknown>)[name];
      out ??= copyOf(headers);
      out[name] =
        !secret && typeof value === "string" && value.length > 8 ? `${value.slice(0, 8)}…` : REDACTED;
    }
    return out ?? headers;
  }

  /** `deep`: also look one level further down (the log object itself; its children are not deep). */
  function scrub(obj: object, deep: boolean): object {
    let out: Record<string, unknown> | undefined;
    for (const key of Object.keys(obj)) {
      const value = (obj as Record<string, unknown>)[key];
      let next = value;
      if (SECRET_FIELD_SET.has(key)) next = REDACTED;
      else if (value !== null && typeof value === "object" && !Array.isArray(value)) {
        if (key === "headers") next = scrubHeaders(value);
        else if (deep) next = scrub(value, false);
      }
      if (next === value) continue;
      out ??= copyOf(obj);
      out[key] = next;
    }
    return out ?? obj;
  }

  return (line: Record<string, unknown>): Record<string, unknown> => {
    try {
      return scrub(line, true) as Record<string, unknown>;
    } catch {
      // An object redaction cannot walk is not written at all (fail closed), but the line is.
      return { redaction: "failed" };
    }
  };
}

/**
 * A plain, writable shallow copy (a frozen instance or a getter must not make redaction throw). An
 * Error keeps what pino's error serializer would have shown: its type, message and stack.
 */
function copyOf(obj: object): Record<string, unknown> {
  if (obj instanceof Error) return { ...obj, type: obj.name, message: obj.message, stack: obj.stack };
  return { ...obj } as Record<string, unknown>;
}

/**
 * The one logger factory. Secrets are removed at serialization time (the redactor above): the
 * credential headers (Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key), any
 * header named in `redactHeaders`, and fields named like secrets (`token`, `key`, `secret`, …).
 * Output is JSON lines; pretty (pino-pretty) when stdout is a TTY and pino-pretty is installed.
 *
 * @example const log = createLogger({ level: "info" }); log.info({ requestId }, "request");
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const redact = createRedactor(options.redactHeaders ?? []);
  const base = {
    level: options.level ?? "info",
    // Each line's object is redacted as it is written; a child logger's bindings when it is made.
    formatters: { log: redact },
    base: { service: "mcpgate" },
    // pino's isoTime, with the date formatted once per second (core/clock.ts).
    timestamp: () => `,"time":"${isoNow()}"`,
    // `trace_id`/`span_id` on every line written inside a traced request (docs/tracing.md).
    mixin: traceLogFields,
    // pino's default merge copies every line's object into the mixin's; outside a traced request
    // there is nothing to merge, and the line's own object is used as it is.
    mixinMergeStrategy: (line: object, fields: object) =>
      (fields as { trace_id?: string }).trace_id === undefined ? line : Object.assign(fields, line),
  };
  if (options.destination) return redactingChildren(pino(base, options.destination), redact);
  if (options.pretty ?? process.stdout.isTTY) {
    try {
      createRequire(import.meta.url).resolve("pino-pretty");
      return redactingChildren(
        pino({ ...base, transport: { target: "pino-pretty", options: { colorize: true } } }),
        redact,
      );
    } catch {
      // pino-pretty is a dev dependency; without it we write JSON lines.
    }
  }
  // Asynchronous, batched, bounded writes to stdout (observe/log-destination.ts): lines leave in
  // ≥ 4 KiB batches, and at the latest after a second. Call `flushLogger` before exiting.
  return redactingChildren(pino(base, createLineDestination()), redact);
}

/**
 * pino serialises a child's bindings once, when the child is made, and applies no log formatter to
 * them: they pass the redaction there (children of children inherit the wrapped `child`).
 */
function redactingChildren(
  logger: Logger,
  redact: (o: Record<string, unknown>) => Record<string, unknown>,
): Logger {
  const child = logger.child;
  logger.child = function (this: Logger, bindings, opts) {
    return child.call(this, redact(bindings as Record<string, unknown>), opts);
  } as Logger["child"];
  return logger;
}

/** Write out buffered log lines (before process exit), waiting at most `timeoutMs`. */
export function flushLogger(logger: Logger, timeoutMs = 5_000): Promise<void> {
  return new Promise((resolve) => {
    // A stdout nobody reads must not hold the exit forever: what is left is written at exit.
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    try {
      logger.flush(() => {
        clearTimeout(timer);
        resolve();
      });
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}

export type { Logger };
