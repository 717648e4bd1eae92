import { afterEach, describe, expect, it } from "vitest";
import { signWebhookPayload, verifyWebhookPayload } from "../../src/core/webhook-signature.js";
import { type Alerter, createAlerter } from "../../src/observe/alerts.js";
import { type Receiver, startReceiver } from "./webhook-receiver.js";

const SECRET = "whsec_0123456789abcdef0123";

describe("webhook signature", () => {
  it("verifies its own signature and rejects a changed body, a wrong secret and a stale timestamp", () => {
    const body = '{"kind":"lockout"}';
    const ts = 1_700_000_000;
    const sig = signWebhookPayload(body, SECRET, ts);
    expect(sig).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(verifyWebhookPayload(body, sig, String(ts), SECRET, { nowSec: ts + 10 })).toBe(true);
    expect(verifyWebhookPayload(`${body} `, sig, String(ts), SECRET, { nowSec: ts })).toBe(false);
    expect(verifyWebhookPayload(body, sig, String(ts), `${SECRET}x`, { nowSec: ts })).toBe(false);
    expect(verifyWebhookPayload(body, sig, String(ts + 1), SECRET, { nowSec: ts })).toBe(false);
    expect(verifyWebhookPayload(body, sig, String(ts), SECRET, { nowSec: ts + 301 })).toBe(false);
    expect(verifyWebhookPayload(body, undefined, String(ts), SECRET, { nowSec: ts })).toBe(false);
    expect(verifyWebhookPayload(body, sig, "12abc", SECRET, { nowSec: ts })).toBe(false);
  });
});

describe("alerts: signed, retried, never blocking", () => {
  let receiver: Receiver;
  let alerter: Alerter | undefined;
  afterEach(async () => {
    await alerter?.close(100);
    await receiver?.close();
  });

  it("posts a JSON alert with a valid signature and timestamp", async () => {
    receiver = await startReceiver();
    alerter = createAlerter({ url: receiver.url, secret: SECRET, instance: "test" });
    alerter.send({ kind: "lockout", ip: "203.0.113.5", seconds: 900 });
    await alerter.flush();
    expect(receiver.deliveries).toHaveLength(1);
    const d = receiver.deliveries[0]!;
    expect(d.headers["content-type"]).toBe("application/json");
    const sig = d.headers["x-mcpgate-signature"] as string;
    const ts = d.headers["x-mcpgate-timestamp"] as string;
    expect(verifyWebhookPayload(d.body, sig, ts, SECRET)).toBe(true);
    expect(JSON.parse(d.body)).toMatchObject({
      kind: "lockout",
      ip: "203.0.113.5",
      seconds: 900,
      instance: "test",
    });
  });

  it("retries 5xx with backoff and gives up on other 4xx at once", async () => {
    receiver = await startReceiver();
    const outcomes: string[] = [];
    alerter = createAlerter({
      url: receiver.url,
      secret: SECRET,
      retryBaseMs: 10,
      maxAttempts: 3,
      onOutcome: (kind, o) => outcomes.push(`${kind}:${o}`),
    });
    receiver.statuses.push(503, 500);
    alerter.send({ kind: "store_outage", store: "state" });
    await alerter.flush();
    expect(receiver.deliveries).toHaveLength(3);
    receiver.statuses.push(401);
    alerter.send({ kind: "lockout", ip: "203.0.113.6" });
    await alerter.flush();
    expect(receiver.deliveries).toHaveLength(4);
    expect(outcomes).toEqual(["store_outage:sent", "lockout:failed"]);
  });

  it("returns at once while the receiver hangs, and drops the oldest alerts past the queue bound", async () => {
    receiver = await startReceiver();
    receiver.hang = true;
    const dropped: string[] = [];
    alerter = createAlerter({
      url: receiver.url,
      secret: SECRET,
      maxQueue: 2,
      maxAttempts: 1,
      attemptTimeoutMs: 5_000,
      onOutcome: (_k, o) => {
        if (o === "dropped") dropped.push(o);
      },
    });
    const started = performance.now();
    for (let i = 0; i < 6; i++) alerter.send({ kind: "lockout", ip: `203.0.113.${i}` });
    expect(performance.now() - started).toBeLessThan(50);
    await receiver.waitFor(1);
    // One in flight, two queued, three dropped.
    expect(alerter.dropped).toBe(3);
    expect(dropped).toHaveLength(3);
  });

  it("refuses a short secret or a non-http URL at construction", () => {
    expect(() => createAlerter({ url: "http://127.0.0.1/x", secret: "short" })).toThrow(/secret/);
    expect(() => createAlerter({ url: "ftp://127.0.0.1/x", secret: SECRET })).toThrow(/http/);
  });
});
