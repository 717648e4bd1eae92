import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Signed webhook deliveries (alerts from the gateway, and from the monitor). The scheme is the one
 * Stripe and GitHub users know: the sender computes `HMAC-SHA256(secret, "<timestamp>.<body>")`
 * and sends it as `X-Mcpgate-Signature: sha256=<hex>` beside `X-Mcpgate-Timestamp: <epoch seconds>`.
 * Binding the timestamp into the MAC lets a receiver reject replays of an old delivery without
 * parsing the body first.
 */

/** Header carrying `sha256=<hex>`. */
export const WEBHOOK_SIGNATURE_HEADER = "x-mcpgate-signature";
/** Header carrying the signing time, epoch seconds. */
export const WEBHOOK_TIMESTAMP_HEADER = "x-mcpgate-timestamp";

/**
 * The signature header value of a body sent at `timestampSec`.
 *
 * @example signWebhookPayload('{"kind":"lockout"}', secret, 1700000000) // "sha256=4be1…"
 */
export function signWebhookPayload(rawBody: string, secret: string, timestampSec: number): string {
  const mac = createHmac("sha256", secret).update(`${timestampSec}.${rawBody}`, "utf8").digest("hex");
  return `sha256=${mac}`;
}

/** Options of {@link verifyWebhookPayload}. */
export interface VerifyWebhookOptions {
  /** Largest accepted distance between the timestamp and now, in seconds. Default 300. */
  toleranceSec?: number;
  /** Current time in epoch seconds (tests freeze it). Default: now. */
  nowSec?: number;
}

/**
 * Check a delivery on the receiving side: a fresh timestamp, then a constant-time MAC compare.
 *
 * @example
 * const ok = verifyWebhookPayload(raw, req.headers["x-mcpgate-signature"], req.headers["x-mcpgate-timestamp"], secret);
 */
export function verifyWebhookPayload(
  rawBody: string,
  signature: string | undefined,
  timestamp: string | undefined,
  secret: string,
  options: VerifyWebhookOptions = {},
): boolean {
  if (!signature || !timestamp || !/^\d{1,12}$/.test(timestamp)) return false;
  const ts = Number(timestamp);
  const now = options.nowSec ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - ts) > (options.toleranceSec ?? 300)) return false;
  const expected = Buffer.from(signWebhookPayload(rawBody, secret, ts));
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
