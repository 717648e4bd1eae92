import {
  signWebhookPayload,
  WEBHOOK_SIGNATURE_HEADER,
  WEBHOOK_TIMESTAMP_HEADER,
} from "../core/webhook-signature.js";
import type { FetchLike } from "./rpc-exchange.js";

/**
 * Monitor alerts, signed exactly like the gateway's (core/webhook-signature.ts): the receiver checks
 * `X-Mcpgate-Signature: sha256=HMAC-SHA256(secret, "<X-Mcpgate-Timestamp>.<raw body>")` with
 * `verifyWebhookPayload`, so one receiver serves both.
 */

export interface WebhookSenderOptions {
  url: string;
  secret: string;
  /** Attempts per alert, first included. Default 4. */
  maxAttempts?: number;
  /** Delay before the second attempt; doubles each time. Default 500. */
  retryBaseMs?: number;
  /** Per-attempt deadline. Default 5000. */
  attemptTimeoutMs?: number;
  /** Alerts waiting beyond this are dropped (oldest first), so a dead receiver cannot grow memory. Default 100. */
  maxQueue?: number;
  fetch?: FetchLike;
  /** Told about deliveries that finally failed (never about the secret). */
  onFailure?: (info: { kind: string; attempts: number; reason: string }) => void;
}

/** Queues signed alerts and delivers them in the background. */
export interface WebhookSender {
  /** Queue an alert; returns at once (alerting never delays probing). */
  send(payload: { kind: string } & Record<string, unknown>): void;
  /** Resolves when everything queued so far was delivered or given up on. */
  flush(): Promise<void>;
}

/**
 * A signed webhook sender with bounded retries (5xx, 429 and network errors are retried with
 * exponential backoff; other 4xx are final) and a bounded queue.
 *
 * @example
 * const hook = createWebhookSender({ url: "https://hooks.example.com/mcpgate", secret: process.env.WEBHOOK_SECRET! });
 * hook.send({ kind: "state_change", target: "prod", from: "up", to: "unreachable" });
 */
export function createWebhookSender(options: WebhookSenderOptions): WebhookSender {
  let parsed: URL;
  try {
    parsed = new URL(options.url);
  } catch {
    throw new TypeError("createWebhookSender: url must be an absolute http(s) URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
    throw new TypeError("createWebhookSender: url must be http(s)");
  if (!options.secret || options.secret.length < 16)
    throw new TypeError("createWebhookSender: secret must be at least 16 characters");
  const maxAttempts = options.maxAttempts ?? 4;
  const baseMs = options.retryBaseMs ?? 500;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? 5000;
  const maxQueue = options.maxQueue ?? 100;
  const doFetch: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
  const queue: Array<{ kind: string } & Record<string, unknown>> = [];
  let running: Promise<void> | undefined;

  async function deliver(payload: { kind: string } & Record<string, unknown>): Promise<void> {
    const body = JSON.stringify(payload);
    let reason = "";
    let attempts = 0;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      attempts = attempt;
      // Signed per attempt: the timestamp says when this delivery was made (receivers bound its age).
      const ts = Math.floor(Date.now() / 1000);
      try {
        const res = await doFetch(options.url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "user-agent": "mcpgate-monitor/0.1",
            [WEBHOOK_SIGNATURE_HEADER]: signWebhookPayload(body, options.secret, ts),
            [WEBHOOK_TIMESTAMP_HEADER]: String(ts),
          },
          body,
          signal: AbortSignal.timeout(attemptTimeoutMs),
          redirect: "manual",
        });
        await res.body?.cancel().catch(() => {});
        if (res.status >= 200 && res.status < 300) return;
        reason = `HTTP ${res.status}`;
        // A 4xx other than 429 will not change on retry (bad secret, wrong URL).
        if (res.status < 500 && res.status !== 429) break;
      } catch (err) {
        reason = (err as Error).name === "TimeoutError" ? "timeout" : "network error";
      }
      if (attempt < maxAttempts) await new Promise((r) => setTimeout(r, baseMs * 2 ** (attempt - 1)));
    }
    options.onFailure?.({ kind: payload.kind, attempts, reason });
  }

  async function drain(): Promise<void> {
    for (let next = queue.shift(); next; next = queue.shift()) await deliver(next);
    running = undefined;
  }

  return {
    send(payload) {
      queue.push(payload);
      if (queue.length > maxQueue) queue.shift();
      running ??= drain();
    },
    async flush() {
      while (running) await running;
    },
  };
}
