import { createWriteStream, type WriteStream } from "node:fs";
import type { AuditEvent } from "../core/audit-event.js";

/**
 * The audit trail of security events (DESIGN.md §2 "audit"): auth success/failure, session
 * mismatch, denial, rate-limit hit, lockout, key lifecycle, store errors. Events are buffered and
 * written off the request path to one or more sinks: a JSON-lines file (`logging.audit`) and, when
 * PostgreSQL holds the keys, a table (`stores/postgres-audit.ts`, which satisfies {@link AuditSink}).
 */

/** Where audit events go. A sink receives batches, in order; a failed batch is reported and dropped. */
export interface AuditSink {
  /** Short name for errors and metrics ("file", "postgres"). */
  readonly name: string;
  write(events: readonly AuditEvent[]): Promise<void>;
  close(): Promise<void>;
}

/** Options of {@link createAuditTrail}. */
export interface AuditTrailOptions {
  sinks: AuditSink[];
  /**
   * `auth_success` is recorded at most once per (actor, source IP) in this interval, so the trail
   * shows who came from where without one line per request; `oauth_token_refused` at most once per
   * (source, reason, client). 0 records every one. Default 60 000.
   */
  successIntervalMs?: number;
  /** Events waiting beyond this are dropped, oldest first (a stuck sink cannot grow memory). Default 10 000. */
  maxBuffer?: number;
  /** Told when a sink fails a batch (the events of that batch are lost for that sink). */
  onError?: (sink: string, err: unknown) => void;
  /** Told about every event accepted (after sampling), e.g. to mirror it to the logger. */
  onEvent?: (event: AuditEvent) => void;
  /** Clock in epoch ms. Default Date.now. */
  now?: () => number;
}

/** The audit trail: `record` never blocks and never throws. */
export interface AuditTrail {
  record(event: AuditEvent): void;
  /** Resolves once everything recorded so far has been handed to every sink. */
  flush(): Promise<void>;
  close(): Promise<void>;
  /** Events dropped because the buffer was full. */
  readonly dropped: number;
}

const MAX_FIELD = 256;
// Defence in depth: the gate only ever puts display prefixes in events, but a reason string built
// from a library message could one day carry a credential. Keys keep their public prefix.
const KEY_SECRET = /\b(mcpg_[A-Za-z0-9]{8})_[A-Za-z0-9]{8,}/g;
const JWT_LIKE = /\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;
const BEARER = /\bBearer\s+\S+/gi;

/**
 * Remove anything shaped like a credential from a string and bound its length.
 *
 * @example scrubText("bad key mcpg_7Hq2xK9a_abcdefgh…") // "bad key mcpg_7Hq2xK9a_[redacted]"
 */
export function scrubText(value: string): string {
  const out = value
    .replace(KEY_SECRET, "$1_[redacted]")
    .replace(JWT_LIKE, "[redacted]")
    .replace(BEARER, "Bearer [redacted]");
  return out.length > MAX_FIELD ? `${out.slice(0, MAX_FIELD)}…` : out;
}

/**
 * A copy of an event with every string field scrubbed ({@link scrubText}).
 *
 * @example scrubAuditEvent({ type: "auth_failure", time, reason: "invalid" })
 */
export function scrubAuditEvent(event: AuditEvent): AuditEvent {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(event)) {
    if (v === undefined) continue;
    if (typeof v === "string") out[k] = scrubText(v);
    else if (k === "detail" && v && typeof v === "object") {
      const d: Record<string, unknown> = {};
      for (const [dk, dv] of Object.entries(v)) {
        if (dv !== undefined) d[dk] = typeof dv === "string" ? scrubText(dv) : dv;
      }
      out[k] = d;
    } else out[k] = v;
  }
  return out as unknown as AuditEvent;
}

/**
 * Build an audit trail over sinks.
 *
 * @example
 * const trail = createAuditTrail({ sinks: [createFileAuditSink({ path: "./audit.jsonl" })] });
 * trail.record({ type: "lockout", time: new Date().toISOString(), ip: "203.0.113.7" });
 * await trail.close();
 */
export function createAuditTrail(options: AuditTrailOptions): AuditTrail {
  if (!options || !Array.isArray(options.sinks))
    throw new TypeError("createAuditTrail: sinks must be an array");
  const successIntervalMs = options.successIntervalMs ?? 60_000;
  const maxBuffer = options.maxBuffer ?? 10_000;
  if (!(successIntervalMs >= 0)) throw new TypeError("createAuditTrail: successIntervalMs must be >= 0");
  if (!(maxBuffer >= 1)) throw new TypeError("createAuditTrail: maxBuffer must be >= 1");
  const now = options.now ?? Date.now;
  const lastSuccess = new Map<string, number>();
  let buffer: AuditEvent[] = [];
  let running: Promise<void> | undefined;
  let dropped = 0;
  let closed = false;

  /**
   * Events anyone can cause at request rate are sampled: one line per (actor, source) per interval
   * for accepted credentials, and per (source, reason, client) for refusals at the authorization
   * server's token endpoint, which an anonymous caller can send without limit.
   */
  function sampleKey(e: AuditEvent): string | undefined {
    if (e.type === "auth_success") return `s|${e.actor ?? ""}|${e.ip ?? ""}`;
    if (e.type === "oauth_token_refused")
      return `t|${e.ip ?? ""}|${e.reason ?? ""}|${e.detail?.client ?? ""}`;
    return undefined;
  }

  function sampledOut(e: AuditEvent): boolean {
    const key = successIntervalMs === 0 ? undefined : sampleKey(e);
    if (key === undefined) return false;
    const t = now();
    const prev = lastSuccess.get(key);
    if (prev !== undefined && t - prev < successIntervalMs) return true;
    // Bounded: an old entry only costs an extra line, so forgetting everything is safe.
    if (lastSuccess.size >= 50_000) lastSuccess.clear();
    lastSuccess.set(key, t);
    return false;
  }

  async function drain(): Promise<void> {
    while (buffer.length > 0) {
      const batch = buffer;
      buffer = [];
      for (const sink of options.sinks) {
        try {
          await sink.write(batch);
        } catch (err) {
          options.onError?.(sink.name, err);
        }
      }
    }
    running = undefined;
  }

  return {
    record(event) {
      if (closed || sampledOut(event)) return;
      const clean = scrubAuditEvent(event);
      options.onEvent?.(clean);
      if (options.sinks.length === 0) return;
      buffer.push(clean);
      if (buffer.length > maxBuffer) {
        buffer.shift();
        dropped++;
      }
      // Written on a later tick: the request that caused the event never waits for a sink.
      running ??= new Promise<void>((r) => setImmediate(r)).then(drain);
    },
    async flush() {
      while (running) await running;
    },
    async close() {
      closed = true;
      while (running) await running;
      await Promise.all(options.sinks.map((s) => s.close().catch((err) => options.onError?.(s.name, err))));
    },
    get dropped() {
      return dropped;
    },
  };
}

/** Options of {@link createFileAuditSink}. */
export interface FileAuditSinkOptions {
  /** File to append JSON lines to (created with mode 0600). */
  path: string;
}

/**
 * An append-only JSON-lines file, one event per line.
 *
 * @example createAuditTrail({ sinks: [createFileAuditSink({ path: "/var/log/mcpgate/audit.jsonl" })] })
 */
export function createFileAuditSink(options: FileAuditSinkOptions): AuditSink {
  if (!options || typeof options.path !== "string" || options.path === "")
    throw new TypeError("createFileAuditSink: path is required");
  let stream: WriteStream | undefined;
  let failure: Error | undefined;
  const open = (): WriteStream => {
    if (!stream) {
      stream = createWriteStream(options.path, { flags: "a", mode: 0o600 });
      stream.on("error", (err) => {
        failure = err;
      });
    }
    return stream;
  };
  return {
    name: "file",
    write(events) {
      const s = open();
      if (failure) return Promise.reject(failure);
      const text = events.map((e) => `${JSON.stringify(e)}\n`).join("");
      return new Promise<void>((resolve, reject) => {
        s.write(text, (err) => (err ? reject(err) : resolve()));
      });
    },
    close() {
      const s = stream;
      stream = undefined;
      if (!s) return Promise.resolve();
      return new Promise<void>((resolve) => s.end(() => resolve()));
    },
  };
}
