import { type ChildProcessByStdio, spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { McpGateError } from "../../core/errors.js";
import type { Logger } from "../../observe/logger.js";

/**
 * Environment variables a stdio child inherits from the gateway by default. Everything else
 * (MCP_API_KEY, tokens, peppers, database and Redis URLs, NODE_OPTIONS…) stays in the gateway:
 * operators add names with `upstream.envAllow` or values with `upstream.env`.
 */
export const DEFAULT_CHILD_ENV_ALLOW: readonly string[] = Object.freeze([
  "PATH",
  "HOME",
  "USER",
  "LOGNAME",
  "SHELL",
  "TERM",
  "LANG",
  "LC_ALL",
  "LC_CTYPE",
  "TZ",
  "TMPDIR",
  // Windows needs these to start most programs at all.
  "SYSTEMROOT",
  "SYSTEMDRIVE",
  "WINDIR",
  "COMSPEC",
  "PATHEXT",
  "APPDATA",
  "LOCALAPPDATA",
  "USERPROFILE",
]);

/**
 * Build a child's environment: the allow-listed names copied from `parent`, then `set` on top.
 *
 * @example buildChildEnv(process.env, { allow: ["GITHUB_TOKEN"], set: { LOG_LEVEL: "debug" } })
 */
export function buildChildEnv(
  parent: NodeJS.ProcessEnv,
  options: { allow?: readonly string[]; set?: Readonly<Record<string, string>> } = {},
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...DEFAULT_CHILD_ENV_ALLOW, ...(options.allow ?? [])]) {
    const v = parent[name];
    // Exported shell functions ("() { …") are a classic injection vector: never pass them on.
    if (typeof v === "string" && !v.startsWith("()")) env[name] = v;
  }
  for (const [k, v] of Object.entries(options.set ?? {})) env[k] = v;
  return env;
}

export interface StdioChildOptions {
  command: readonly string[];
  env: Record<string, string>;
  cwd?: string;
  logger: Logger;
  /** Tag for log lines (a redacted session id, or "pool-N"). */
  tag: string;
  /** Longest stdout line (one JSON-RPC message) accepted; a longer one kills the child. */
  maxMessageBytes?: number;
  /** Longest stderr line written to the log; the rest of the line is dropped. */
  maxStderrLine?: number;
  onMessage(message: unknown, text: string): void;
  onExit(info: { code: number | null; signal: NodeJS.Signals | null; error?: string }): void;
}

/** One stdio MCP server process: newline-delimited JSON-RPC on stdin/stdout, stderr to the log. */
export interface StdioChild {
  readonly pid: number | undefined;
  readonly alive: boolean;
  /**
   * Write one message: an object (serialised here) or a JSON text without raw newlines.
   * Returns false when the child is gone, or when it has left more than STDIN_BACKLOG_MAX of its
   * input unread (it is stuck writing output nobody reads): nothing more is queued for it.
   */
  send(message: unknown): boolean;
  /** Write several messages, all or none (a batch is never cut part-way); false as for `send`. */
  sendAll(messages: readonly unknown[]): boolean;
  /** True while more than STDIN_BACKLOG_MAX written to the child waits for it to read. */
  readonly inputBacklogged: boolean;
  /** Stop reading the child's stdout (its client is not reading): the child blocks on its writes. */
  pauseOutput(): void;
  resumeOutput(): void;
  /** SIGTERM (and closed stdin), then SIGKILL after `graceMs`; resolves once the process is gone. */
  terminate(graceMs: number): Promise<void>;
  /** Resolves when the process has exited (and been reaped). */
  readonly exited: Promise<void>;
  /** The tag of its log lines (a spare child is re-tagged when a session adopts it). */
  tag: string;
}

const DEFAULT_MAX_MESSAGE = 32 * 1024 * 1024;
/** Most bytes queued for a child's stdin: a child that does not read holds the gateway to this. */
export const STDIN_BACKLOG_MAX = 8 * 1024 * 1024;
const DEFAULT_MAX_STDERR_LINE = 2048;

/**
 * Start a stdio MCP server. The child gets its own process group so that a wrapper such as `npx`
 * and the server it starts are ended together.
 *
 * @example
 * const child = spawnStdioChild({ command: ["node", "server.js"], env: buildChildEnv(process.env),
 *   logger, tag: "a1b2c3d4…", onMessage: (m) => {}, onExit: () => {} });
 */
export function spawnStdioChild(options: StdioChildOptions): StdioChild {
  const [file, ...args] = options.command;
  if (!file) throw new McpGateError("ERR_STDIO_SPAWN", "upstream.command is empty");
  const maxMessage = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE;
  const maxStderr = options.maxStderrLine ?? DEFAULT_MAX_STDERR_LINE;
  const { logger } = options;
  let tag = options.tag;
  let proc: ChildProcessByStdio<Writable, Readable, Readable>;
  try {
    proc = spawn(file, args, {
      env: options.env,
      ...(options.cwd ? { cwd: options.cwd } : {}),
      stdio: ["pipe", "pipe", "pipe"],
      detached: process.platform !== "win32",
      windowsHide: true,
    });
  } catch (err) {
    throw new McpGateError("ERR_STDIO_SPAWN", `cannot start ${file}`, { cause: err });
  }
  let alive = true;
  let exitError: string | undefined;
  let resolveExited!: () => void;
  const exited = new Promise<void>((r) => {
    resolveExited = r;
  });

  proc.on("error", (err: NodeJS.ErrnoException) => {
    // ENOENT/EACCES arrive here (no "exit" follows when the spawn itself failed).
    exitError = err.code ?? "spawn error";
    if (proc.pid === undefined) finish(null, null);
  });
  // "close", not "exit": it fires once stdout is drained, so a last response is never lost.
  proc.on("close", (code, signal) => finish(code, signal));
  proc.stdin.on("error", () => {
    // EPIPE after the child died: the exit handler reports it.
  });

  function finish(code: number | null, signal: NodeJS.Signals | null) {
    if (!alive) return;
    alive = false;
    options.onExit({ code, signal, ...(exitError ? { error: exitError } : {}) });
    resolveExited();
  }

  // stdout: newline-delimited JSON-RPC (MCP stdio transport: messages MUST NOT contain newlines).
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  proc.stdout.on("data", (chunk: Buffer) => {
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      let line: string;
      if (pendingBytes > 0) {
        pending.push(piece);
        line = Buffer.concat(pending).toString("utf8");
        pending = [];
        pendingBytes = 0;
      } else line = piece.toString("utf8");
      handleLine(line);
    }
    if (start < chunk.length) {
      pending.push(chunk.subarray(start));
      pendingBytes += chunk.length - start;
      if (pendingBytes > maxMessage) {
        logger.warn({ upstream: tag, pid: proc.pid }, "stdio upstream wrote an over-long message; ending it");
        pending = [];
        pendingBytes = 0;
        void terminate(0);
      }
    }
  });

  function handleLine(raw: string) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      // Some servers print banners on stdout; they are not protocol messages.
      logger.info(
        { upstream: tag, pid: proc.pid, stdout: clip(line, maxStderr) },
        "upstream non-JSON stdout",
      );
      return;
    }
    options.onMessage(value, line);
  }

  // stderr: to the gateway log, one record per line, each bounded.
  let errLine = "";
  let errDropping = false;
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (chunk: string) => {
    const parts = chunk.split("\n");
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      if (!errDropping) errLine += parts[i];
      if (errLine.length > maxStderr) {
        if (!errDropping) logStderr(`${errLine.slice(0, maxStderr)}…`);
        errDropping = true;
        errLine = "";
      }
      if (!last) {
        if (!errDropping && errLine !== "") logStderr(errLine);
        errLine = "";
        errDropping = false;
      }
    }
  });
  proc.stderr.on("end", () => {
    if (errLine !== "" && !errDropping) logStderr(errLine);
    errLine = "";
  });
  function logStderr(line: string) {
    logger.info({ upstream: tag, pid: proc.pid, stderr: line.replace(/\r$/, "") }, "upstream stderr");
  }

  function signalGroup(sig: NodeJS.Signals) {
    if (!alive || proc.pid === undefined) return;
    try {
      if (process.platform !== "win32") process.kill(-proc.pid, sig);
      else proc.kill(sig);
    } catch {
      try {
        proc.kill(sig);
      } catch {
        // Already gone.
      }
    }
  }

  async function terminate(graceMs: number): Promise<void> {
    if (!alive) return exited;
    proc.stdin.end();
    if (graceMs > 0) {
      signalGroup("SIGTERM");
      const timer = setTimeout(() => signalGroup("SIGKILL"), graceMs);
      timer.unref();
      await exited;
      clearTimeout(timer);
    } else {
      signalGroup("SIGKILL");
      await exited;
    }
  }

  /** See {@link StdioChild.sendAll}. */
  function sendAll(messages: readonly unknown[]): boolean {
    if (!alive || !proc.stdin.writable || proc.stdin.writableLength > STDIN_BACKLOG_MAX) return false;
    // JSON.stringify never emits a raw newline, so one message is exactly one line. A string is
    // taken as already-serialised JSON and must not contain one either. Every line is made before
    // any is written.
    const lines = messages.map((m) => {
      const line = typeof m === "string" ? m : JSON.stringify(m);
      if (/[\r\n]/.test(line))
        throw new McpGateError("ERR_INVALID_OPTION", "a stdio message must be one line");
      return `${line}\n`;
    });
    proc.stdin.write(lines.length === 1 ? lines[0]! : lines.join(""));
    return true;
  }

  return {
    get pid() {
      return proc.pid;
    },
    get alive() {
      return alive;
    },
    get inputBacklogged() {
      return proc.stdin.writableLength > STDIN_BACKLOG_MAX;
    },
    send: (message: unknown) => sendAll([message]),
    sendAll,

    pauseOutput() {
      proc.stdout.pause();
    },
    resumeOutput() {
      proc.stdout.resume();
    },
    terminate,
    exited,
    get tag() {
      return tag;
    },
    set tag(value: string) {
      tag = value;
    },
  };
}

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}
