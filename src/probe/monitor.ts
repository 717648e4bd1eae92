import { type Alert, type Alerter, createAlerter } from "../observe/alerts.js";
import type { HistoryStore, MonitorEvent, ProbeRecord } from "../stores/probe-history.js";
import type { MonitorConfig, MonitorTarget } from "./monitor-config.js";
import { createMonitorMetrics, type MonitorMetrics } from "./monitor-metrics.js";
import { type ProbeResult, type ProbeStatus, probeEndpoint } from "./probe.js";
import type { FetchLike } from "./rpc-exchange.js";
import { readCertificateExpiry } from "./tls-expiry.js";

const DAY_MS = 86_400_000;
const CERT_CHECK_EVERY_MS = 6 * 3_600_000;
const PRUNE_EVERY_MS = 3_600_000;
const KEEP_MS = 8 * DAY_MS; // 7 d of uptime plus a margin

export interface MonitorOptions {
  config: MonitorConfig;
  history: HistoryStore;
  /** Replaces the alert sender built from `config.alerts` (the gateway's, observe/alerts.ts). */
  webhook?: Pick<Alerter, "send" | "flush">;
  /** HTTP client for probes (default: undici). */
  fetch?: FetchLike;
  /** Clock, for tests. */
  now?: () => number;
  /** Operational messages (never a key). Default: none. */
  log?: (message: string) => void;
}

/** What the status page and `/api/status` show for one target. */
export interface TargetStatus {
  name: string;
  url: string;
  status: ProbeStatus | "pending";
  /** Epoch ms of the last status change seen (or the first check). */
  since: number | null;
  lastCheckedAt: number | null;
  latencyMs: number | null;
  httpStatus: number | null;
  error: string | null;
  challenge: string | null;
  tools: number | null;
  schemaHash: string | null;
  steps: ProbeResult["steps"];
  /** Percent of up checks, or null without checks. */
  uptime24h: number | null;
  uptime7d: number | null;
  certExpiresAt: number | null;
  intervalMs: number;
  /** Last 24 h, oldest first. */
  latency: Array<{ at: number; latencyMs: number; status: ProbeStatus }>;
  /** Newest first. */
  events: MonitorEvent[];
}

export interface MonitorSnapshot {
  generatedAt: number;
  targets: TargetStatus[];
}

interface TargetState {
  target: MonitorTarget;
  last?: ProbeRecord;
  since: number | null;
  lastHash: string | null;
  certExpiresAt: number | null;
  certCheckedAt: number;
  certAlertedFor: number | null;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
}

/** A running monitor: probes targets on schedule, stores history, raises alerts. */
export interface Monitor {
  readonly metrics: MonitorMetrics;
  readonly history: HistoryStore;
  /** Load the last known state from history and schedule every target (first probe after a jitter). */
  start(): Promise<void>;
  /** Stop scheduling and wait for probes in flight. Does not close the history. */
  stop(): Promise<void>;
  /** Probe now (all targets, or one by name) and wait; used by `--once` and tests. */
  runOnce(name?: string): Promise<void>;
  snapshot(): Promise<MonitorSnapshot>;
  /** Resolves when queued alerts have been delivered or given up. */
  flushAlerts(): Promise<void>;
}

/**
 * @example
 * const monitor = createMonitor({ config: loadMonitorConfig("monitor.yaml"), history: await openHistoryStore("sqlite:./m.db") });
 * await monitor.start();
 */
export function createMonitor(options: MonitorOptions): Monitor {
  const { config, history } = options;
  const now = options.now ?? Date.now;
  const log = options.log ?? (() => {});
  const metrics = createMonitorMetrics();
  let webhook = options.webhook;
  if (!webhook && config.alerts.webhook && config.alerts.secret) {
    webhook = createAlerter({
      url: config.alerts.webhook,
      secret: config.alerts.secret,
      userAgent: "mcpgate-monitor/0.1",
      onOutcome: (kind, outcome, d) => {
        if (outcome === "failed")
          log(`alert ${kind} not delivered after ${d.attempts} attempt(s): ${d.reason}`);
        else if (outcome === "dropped") log(`alert ${kind} dropped: too many alerts waiting`);
      },
    });
  }
  const states = new Map<string, TargetState>(
    config.targets.map((t) => [
      t.name,
      { target: t, since: null, lastHash: null, certExpiresAt: null, certCheckedAt: 0, certAlertedFor: null },
    ]),
  );
  let stopped = true;
  let lastPrune = 0;
  let loaded: Promise<void> | undefined;

  function loadState(): Promise<void> {
    loaded ??= (async () => {
      for (const st of states.values()) {
        try {
          st.last = await history.last(st.target.name);
          st.since = st.last?.at ?? null;
          st.lastHash = st.last?.schemaHash ?? null;
          if (!st.lastHash) {
            const recent = await history.results(st.target.name, now() - 7 * DAY_MS, 500);
            st.lastHash = recent.findLast((r) => r.schemaHash)?.schemaHash ?? null;
          }
        } catch (err) {
          log(`history unavailable while loading ${st.target.name}: ${(err as Error).message}`);
        }
      }
    })();
    return loaded;
  }

  async function raise(event: MonitorEvent, url: string): Promise<void> {
    try {
      await history.recordEvent(event);
    } catch (err) {
      log(`history write failed: ${(err as Error).message}`);
    }
    webhook?.send({
      kind: event.kind,
      target: event.target,
      url,
      at: new Date(event.at).toISOString(),
      message: event.message,
      ...scalarFields(event.detail),
    });
  }

  async function checkTarget(st: TargetState): Promise<void> {
    const t = st.target;
    const result = await probeEndpoint(t.url, {
      ...(t.key ? { key: t.key } : {}),
      headers: { ...t.headers },
      timeoutMs: t.timeoutMs,
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
    const at = now();
    const record: ProbeRecord = {
      target: t.name,
      at,
      status: result.status,
      httpStatus: result.httpStatus,
      latencyMs: result.latencyMs,
      tools: result.tools,
      schemaHash: result.schemaHash,
      challenge: result.challenge,
      error: result.error ?? null,
      steps: result.steps,
    };
    metrics.observe(t.name, result);
    try {
      await history.record(record);
    } catch (err) {
      log(`history write failed: ${(err as Error).message}`);
    }
    const prev = st.last;
    st.last = record;
    if (!prev) st.since = at;
    if (prev && prev.status !== record.status) {
      st.since = at;
      const words = record.status === "up" ? "is up again" : `is ${record.status.replace("_", " ")}`;
      await raise(
        {
          target: t.name,
          at,
          kind: "state_change",
          message: `${t.name} ${words}${record.error ? `: ${record.error}` : ""}`,
          detail: {
            from: prev.status,
            to: record.status,
            httpStatus: record.httpStatus,
            error: record.error,
          },
        },
        result.url,
      );
    }
    if (record.schemaHash) {
      if (st.lastHash && st.lastHash !== record.schemaHash) {
        metrics.observeDrift(t.name);
        await raise(
          {
            target: t.name,
            at,
            kind: "schema_drift",
            message: `${t.name}: the tool list changed (${record.tools} tools now)`,
            detail: { fromHash: st.lastHash, toHash: record.schemaHash, tools: record.tools },
          },
          result.url,
        );
      }
      st.lastHash = record.schemaHash;
    }
    await checkCertificate(st, at, result.url);
    if (at - lastPrune > PRUNE_EVERY_MS) {
      lastPrune = at;
      await history.prune(at - KEEP_MS).catch((err: Error) => log(`history prune failed: ${err.message}`));
    }
  }

  async function checkCertificate(st: TargetState, at: number, url: string): Promise<void> {
    if (!st.target.url.startsWith("https:") || at - st.certCheckedAt < CERT_CHECK_EVERY_MS) return;
    st.certCheckedAt = at;
    const exp = await readCertificateExpiry(st.target.url, { timeoutMs: st.target.timeoutMs, now: at });
    if (!exp) return;
    st.certExpiresAt = exp.notAfter;
    metrics.observeCertificate(st.target.name, exp.notAfter);
    // One alert per certificate: a renewed certificate (new notAfter) can alert again.
    if (exp.daysLeft <= config.alerts.certExpiryDays && st.certAlertedFor !== exp.notAfter) {
      st.certAlertedFor = exp.notAfter;
      const when =
        exp.daysLeft < 0 ? `expired ${-exp.daysLeft} day(s) ago` : `expires in ${exp.daysLeft} day(s)`;
      await raise(
        {
          target: st.target.name,
          at,
          kind: "cert_expiry",
          message: `${st.target.name}: TLS certificate ${when}`,
          detail: { notAfter: new Date(exp.notAfter).toISOString(), daysLeft: exp.daysLeft },
        },
        url,
      );
    }
  }

  function runTarget(st: TargetState): Promise<void> {
    // Never two probes of one target at once: a slow target is not hammered.
    st.running ??= checkTarget(st)
      .catch((err: Error) => log(`probe of ${st.target.name} failed: ${err.message}`))
      .finally(() => {
        st.running = undefined;
      });
    return st.running;
  }

  function schedule(st: TargetState, delayMs: number): void {
    if (stopped) return;
    st.timer = setTimeout(async () => {
      await runTarget(st);
      // ±10 % jitter keeps many monitors (and many targets) from probing in lockstep.
      schedule(st, st.target.intervalMs * (0.9 + Math.random() * 0.2));
    }, delayMs);
    st.timer.unref?.();
  }

  return {
    metrics,
    history,
    async start() {
      await loadState();
      stopped = false;
      for (const st of states.values())
        schedule(st, Math.random() * Math.min(st.target.intervalMs * 0.2, 5000));
    },
    async stop() {
      stopped = true;
      for (const st of states.values()) clearTimeout(st.timer);
      await Promise.all([...states.values()].map((st) => st.running));
    },
    async runOnce(name) {
      await loadState();
      const chosen = [...states.values()].filter((st) => name === undefined || st.target.name === name);
      await Promise.all(chosen.map(runTarget));
    },
    async snapshot() {
      const at = now();
      const targets = await Promise.all([...states.values()].map((st) => describeTarget(st, at)));
      return { generatedAt: at, targets };
    },
    async flushAlerts() {
      await webhook?.flush();
    },
  };

  async function describeTarget(st: TargetState, at: number): Promise<TargetStatus> {
    const name = st.target.name;
    const pct = ({ checks, up }: { checks: number; up: number }) =>
      checks ? Math.round((up / checks) * 10_000) / 100 : null;
    const [day, week, recent, events] = await Promise.all([
      history.uptime(name, at - DAY_MS).catch(() => ({ checks: 0, up: 0 })),
      history.uptime(name, at - 7 * DAY_MS).catch(() => ({ checks: 0, up: 0 })),
      history.results(name, at - DAY_MS, 2000).catch(() => [] as ProbeRecord[]),
      history.events(name, 10).catch(() => [] as MonitorEvent[]),
    ]);
    const last = st.last;
    const shown = new URL(st.target.url);
    shown.username = "";
    shown.password = "";
    return {
      name,
      url: shown.toString(),
      status: last?.status ?? "pending",
      since: st.since,
      lastCheckedAt: last?.at ?? null,
      latencyMs: last?.latencyMs ?? null,
      httpStatus: last?.httpStatus ?? null,
      error: last?.error ?? null,
      challenge: last?.challenge ?? null,
      tools: last?.tools ?? null,
      schemaHash: last?.schemaHash ?? null,
      steps: last?.steps ?? [],
      uptime24h: pct(day),
      uptime7d: pct(week),
      certExpiresAt: st.certExpiresAt,
      intervalMs: st.target.intervalMs,
      latency: recent.map((r) => ({ at: r.at, latencyMs: r.latencyMs, status: r.status })),
      events,
    };
  }
}

/** The flat (string, number, boolean, null) fields of an event's detail: an alert body is one level deep. */
function scalarFields(detail: Record<string, unknown>): Record<string, Alert[string]> {
  const out: Record<string, Alert[string]> = {};
  for (const [k, v] of Object.entries(detail)) {
    if (v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean") out[k] = v;
  }
  return out;
}
