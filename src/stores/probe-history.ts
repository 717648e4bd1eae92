import { parseKeyStoreLocation } from "./open-key-store.js";

/**
 * History of `mcpgate monitor` (probe results and alert events). The probe vocabulary is defined here,
 * at the bottom, because the SQL stores that keep it must live in `stores/` (the only layer that loads
 * database drivers); `probe/` re-exports it.
 */

/** DESIGN.md §6: what one check concluded. */
export type ProbeStatus =
  | "up"
  | "auth_rejected"
  | "server_error"
  | "timeout"
  | "unreachable"
  | "protocol_error";

/**
 * How the endpoint answered a request without credentials: `ok` = 401 with a Bearer
 * `WWW-Authenticate` challenge; `missing` = refused (401/403) without one, so OAuth clients cannot
 * discover where to get a token; `none` = not refused at all (the endpoint is not protected).
 */
export type ChallengeState = "ok" | "missing" | "none";

/** One timed HTTP request of the probe. */
export interface ProbeStep {
  name: "unauthenticated" | "discover" | "initialize" | "tools/list" | "ping" | "delete";
  /** 0 when no response arrived. */
  httpStatus: number;
  latencyMs: number;
  ok: boolean;
}

/** One stored probe result. */
export interface ProbeRecord {
  target: string;
  /** Epoch ms. */
  at: number;
  status: ProbeStatus;
  httpStatus: number;
  latencyMs: number;
  tools: number | null;
  schemaHash: string | null;
  challenge: ChallengeState;
  error: string | null;
  steps: ProbeStep[];
}

/** Something the monitor noticed and alerted on. */
export interface MonitorEvent {
  target: string;
  at: number;
  kind: "state_change" | "schema_drift" | "cert_expiry";
  /** One sentence for people (status page, webhook). */
  message: string;
  detail: Record<string, unknown>;
}

/**
 * Where probe results and events are kept: SQLite by default, PostgreSQL for a shared history,
 * memory for embedding and tests. Methods reject with ERR_STORE_UNAVAILABLE when the database fails.
 */
export interface HistoryStore {
  init(): Promise<void>;
  record(r: ProbeRecord): Promise<void>;
  recordEvent(e: MonitorEvent): Promise<void>;
  /** Results for a target since `sinceMs`, oldest first, at most `limit` (the newest ones). */
  results(target: string, sinceMs: number, limit?: number): Promise<ProbeRecord[]>;
  last(target: string): Promise<ProbeRecord | undefined>;
  /** Checks and up checks for a target since `sinceMs`. */
  uptime(target: string, sinceMs: number): Promise<{ checks: number; up: number }>;
  /** Newest first. */
  events(target: string, limit: number): Promise<MonitorEvent[]>;
  /** Delete results and events older than `beforeMs`. */
  prune(beforeMs: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Open the history named in the monitor config: `sqlite:PATH`, `postgres://…[?schema=NAME]` or
 * `memory:`. The driver is imported only for the scheme used.
 *
 * @example const history = await openHistoryStore("sqlite:./mcpgate-monitor.db");
 */
export async function openHistoryStore(location: string): Promise<HistoryStore> {
  const loc = parseKeyStoreLocation(location);
  let store: HistoryStore;
  if (loc.kind === "memory") store = createMemoryHistory();
  else if (loc.kind === "sqlite") {
    const { createSqliteHistory } = await import("./probe-history-sqlite.js");
    store = createSqliteHistory({ path: loc.path });
  } else {
    const { createPostgresHistory } = await import("./probe-history-postgres.js");
    store = createPostgresHistory({
      connectionString: loc.connectionString,
      ...(loc.schema ? { schema: loc.schema } : {}),
    });
  }
  await store.init();
  return store;
}

/**
 * An in-process history (lost on restart).
 *
 * @example const history = createMemoryHistory();
 */
export function createMemoryHistory(): HistoryStore {
  let rows: ProbeRecord[] = [];
  let events: MonitorEvent[] = [];
  return {
    async init() {},
    async record(r) {
      rows.push(structuredClone(r));
    },
    async recordEvent(e) {
      events.push(structuredClone(e));
    },
    async results(target, sinceMs, limit = 10_000) {
      return rows.filter((r) => r.target === target && r.at >= sinceMs).slice(-limit);
    },
    async last(target) {
      return rows.findLast((r) => r.target === target);
    },
    async uptime(target, sinceMs) {
      const mine = rows.filter((r) => r.target === target && r.at >= sinceMs);
      return { checks: mine.length, up: mine.filter((r) => r.status === "up").length };
    },
    async events(target, limit) {
      return events
        .filter((e) => e.target === target)
        .slice(-limit)
        .reverse();
    },
    async prune(beforeMs) {
      rows = rows.filter((r) => r.at >= beforeMs);
      events = events.filter((e) => e.at >= beforeMs);
    },
    async close() {},
  };
}

/** Column order shared by the SQL stores. */
export const RESULT_COLUMNS =
  "target, at, status, http_status, latency_ms, tools, schema_hash, challenge, error, steps";

export interface ResultRow {
  target: string;
  at: number | string;
  status: string;
  http_status: number;
  latency_ms: number;
  tools: number | null;
  schema_hash: string | null;
  challenge: string;
  error: string | null;
  steps: string;
}

export function recordValues(r: ProbeRecord): unknown[] {
  return [
    r.target,
    r.at,
    r.status,
    r.httpStatus,
    r.latencyMs,
    r.tools,
    r.schemaHash,
    r.challenge,
    r.error,
    JSON.stringify(r.steps),
  ];
}

export function rowToRecord(row: ResultRow): ProbeRecord {
  return {
    target: row.target,
    at: Number(row.at),
    status: row.status as ProbeStatus,
    httpStatus: row.http_status,
    latencyMs: row.latency_ms,
    tools: row.tools,
    schemaHash: row.schema_hash,
    challenge: row.challenge as ChallengeState,
    error: row.error,
    steps: JSON.parse(row.steps) as ProbeStep[],
  };
}

export interface EventRow {
  target: string;
  at: number | string;
  kind: string;
  message: string;
  detail: string;
}

export function rowToEvent(row: EventRow): MonitorEvent {
  return {
    target: row.target,
    at: Number(row.at),
    kind: row.kind as MonitorEvent["kind"],
    message: row.message,
    detail: JSON.parse(row.detail) as Record<string, unknown>,
  };
}
