import { hostname } from "node:os";
import {
  signWebhookPayload,
  WEBHOOK_SIGNATURE_HEADER,
  WEBHOOK_TIMESTAMP_HEADER,
} from "../core/webhook-signature.js";

/**
 * Alerts to a webhook: a signed JSON POST (core/webhook-signature.ts). The gateway sends lockouts,
 * 401 spikes and store outages (`alerts.webhook`); the monitor (probe/monitor.ts) sends target
 * state changes, schema drift and certificate expiry through the same sender, so one receiver
 * serves both. Sending never blocks the request path or a probe: alerts go into a bounded queue
 * (oldest dropped first, counted) drained in the background, each delivery retried a bounded
 * number of times with exponential backoff.
 */

/** Gateway alerts, then monitor alerts (docs/observability.md, docs/monitoring.md). */
export type AlertKind =
  | "lockout"
  | "auth_failure_spike"
  | "store_outage"
  | "state_change"
  | "schema_drift"
  | "cert_expiry";

/** An alert; every field must be safe to send (addresses, display prefixes, counts — no secret). */
export interface Alert {
  kind: AlertKind;
  [field: string]: string | number | boolean | null | undefined;
}

/** How a delivery ended: attempts made, and for a failure the last reason (never a secret). */
export interface AlertDelivery {
  attempts: number;
  /** `HTTP <status>`, `timeout` or `network error`; absent when sent or dropped. */
  reason?: string;
}

/** Options of {@link createAlerter}. */
export interface AlerterOptions {
  /** The receiver (http or https). */
  url: string;
  /** HMAC key shared with the receiver, ≥ 16 characters. */
  secret: string;
  /** Attempts per alert, the first included. Default 4. */
  maxAttempts?: number;
  /** Delay before the second attempt, doubled each time. Default 500 ms. */
  retryBaseMs?: number;
  /** Deadline of one attempt. Default 5 000 ms. */
  attemptTimeoutMs?: number;
  /** Alerts waiting beyond this are dropped, oldest first. Default 100. */
  maxQueue?: number;
  /** Told about each alert's end: delivered, failed after every attempt, or dropped unsent. */
  onOutcome?: (kind: AlertKind, outcome: "sent" | "failed" | "dropped", delivery: AlertDelivery) => void;
  /** `instance` field of every alert. Default: the host name. */
  instance?: string;
  /** `User-Agent` of deliveries. Default `mcpgate-alerts/0.1`. */
  userAgent?: string;
}

/** A running alert sender (see {@link createAlerter}). */
export interface Alerter {
  /** Queue an alert; returns at once. */
  send(alert: Alert): void;
  /** Resolves when everything queued so far was delivered or given up on. */
  flush(): Promise<void>;
  /** Stop: pending retries are abandoned after at most `graceMs` (default 2 000). */
  close(graceMs?: number): Promise<void>;
  /** Alerts dropped because the queue was full. */
  readonly dropped: number;
}

/**
 * Build the alert sender.
 *
 * @example
 * const alerts = createAlerter({ url: "https://hooks.example.com/mcpgate", secret: process.env.WEBHOOK_SECRET! });
 * alerts.send({ kind: "lockout", ip: "203.0.113.7", seconds: 900 });
 */
export function createAlerter(options: AlerterOptions): Alerter {
  let url: URL;
  try {
    url = new URL(options?.url);
  } catch {
    throw new TypeError("createAlerter: url must be an absolute http(s) URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new TypeError("createAlerter: url must be http(s)");
  if (typeof options.secret !== "string" || options.secret.length < 16)
    throw new TypeError("createAlerter: secret must be at least 16 characters");
  const maxAttempts = options.maxAttempts ?? 4;
  const retryBaseMs = options.retryBaseMs ?? 500;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? 5_000;
  const maxQueue = options.maxQueue ?? 100;
  if (!(maxAttempts >= 1) || !(maxQueue >= 1))
    throw new TypeError("createAlerter: maxAttempts and maxQueue must be >= 1");
  const instance = options.instance ?? hostname();
  const userAgent = options.userAgent ?? "mcpgate-alerts/0.1";
  const stop = new AbortController();
  const queue: Array<{ alert: Alert; time: string }> = [];
  let running: Promise<void> | undefined;
  let dropped = 0;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const onAbort = () => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(() => {
        stop.signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      stop.signal.addEventListener("abort", onAbort, { once: true });
    });

  async function deliver(item: { alert: Alert; time: string }): Promise<AlertDelivery & { ok: boolean }> {
    const body = JSON.stringify({ ...item.alert, time: item.time, service: "mcpgate", instance });
    let attempts = 0;
    let reason = "stopped";
    for (let attempt = 1; attempt <= maxAttempts && !stop.signal.aborted; attempt++) {
      attempts = attempt;
      // Signed per attempt: the timestamp says when this delivery was made (receivers bound it).
      const ts = Math.floor(Date.now() / 1000);
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "user-agent": userAgent,
            [WEBHOOK_SIGNATURE_HEADER]: signWebhookPayload(body, options.secret, ts),
            [WEBHOOK_TIMESTAMP_HEADER]: String(ts),
          },
          body,
          redirect: "manual",
          signal: AbortSignal.any([AbortSignal.timeout(attemptTimeoutMs), stop.signal]),
        });
        await res.body?.cancel().catch(() => {});
        if (res.status >= 200 && res.status < 300) return { ok: true, attempts };
        reason = `HTTP ${res.status}`;
        // A 4xx other than 429 will not change on retry (bad secret, wrong URL).
        if (res.status < 500 && res.status !== 429) break;
      } catch (err) {
        // Network error or timeout: retry.
        reason = (err as Error).name === "TimeoutError" ? "timeout" : "network error";
      }
      if (attempt < maxAttempts) await sleep(retryBaseMs * 2 ** (attempt - 1));
    }
    return { ok: false, attempts, reason };
  }

  async function drain(): Promise<void> {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const { ok, ...delivery } = await deliver(next);
      options.onOutcome?.(next.alert.kind, ok ? "sent" : "failed", delivery);
    }
    running = undefined;
  }

  return {
    send(alert) {
      if (stop.signal.aborted) return;
      queue.push({ alert, time: new Date().toISOString() });
      if (queue.length > maxQueue) {
        const old = queue.shift()!;
        dropped++;
        options.onOutcome?.(old.alert.kind, "dropped", { attempts: 0 });
      }
      running ??= drain();
    },
    async flush() {
      while (running) await running;
    },
    async close(graceMs = 2_000) {
      const done = (async () => {
        while (running) await running;
      })();
      const timer = new Promise<void>((r) => setTimeout(r, graceMs).unref());
      await Promise.race([done, timer]);
      stop.abort();
      await done;
    },
    get dropped() {
      return dropped;
    },
  };
}
