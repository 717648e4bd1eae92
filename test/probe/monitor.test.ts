import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { isMcpGateError } from "../../src/core/errors.js";
import { verifyWebhookPayload } from "../../src/core/webhook-signature.js";
import { createAlerter } from "../../src/observe/alerts.js";
import { createMonitor } from "../../src/probe/monitor.js";
import { resolveMonitorConfig } from "../../src/probe/monitor-config.js";
import { startStatusServer } from "../../src/probe/status-page.js";
import { openHistoryStore } from "../../src/stores/probe-history.js";
import { DEFAULT_TOOLS, type SdkTestServer, startSdkServer } from "./helpers/servers.js";

const KEY = "mcpg_M0nitor1_monitorSecretValueNeverShown000000";
const SECRET = "whsec_test_0123456789abcdef";

interface Delivery {
  headers: IncomingMessage["headers"];
  raw: string;
}

/** A webhook receiver on 127.0.0.1 that answers with the statuses given, then 200. */
async function startReceiver(
  statuses: number[] = [],
): Promise<{ url: string; got: Delivery[]; close(): Promise<void> }> {
  const got: Delivery[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    got.push({ headers: req.headers, raw: Buffer.concat(chunks).toString("utf8") });
    res.writeHead(statuses.shift() ?? 200).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    got,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), "mcpgate-monitor-"));
}

describe("monitor", () => {
  let target: SdkTestServer;
  let dir: string;
  beforeAll(async () => {
    target = await startSdkServer({ key: KEY });
    dir = tmp();
  });
  afterAll(async () => {
    await target.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes every probe to the SQLite history file", async () => {
    const file = join(dir, "history-a.db");
    const config = resolveMonitorConfig(
      { targets: [{ name: "api", url: target.url, keyEnv: "PROBE_KEY" }], history: `sqlite:${file}` },
      { PROBE_KEY: KEY },
    );
    const history = await openHistoryStore(config.history);
    const monitor = createMonitor({ config, history });
    await monitor.runOnce();
    await monitor.runOnce();
    await history.close();
    expect(existsSync(file)).toBe(true);
    const reopened = await openHistoryStore(`sqlite:${file}`);
    try {
      const rows = await reopened.results("api", 0);
      expect(rows).toHaveLength(2);
      expect(rows.every((r) => r.status === "up" && r.tools === 2)).toBe(true);
      expect(await reopened.uptime("api", 0)).toEqual({ checks: 2, up: 2 });
      expect(readFileSync(file).includes(Buffer.from(KEY))).toBe(false);
    } finally {
      await reopened.close();
    }
  });

  it("fires exactly one signed webhook for a state change and reports tool changes as drift", async () => {
    const receiver = await startReceiver();
    const flaky = await startSdkServer({ key: KEY });
    const config = resolveMonitorConfig(
      {
        targets: [{ name: "flaky", url: flaky.url, keyEnv: "PROBE_KEY", timeout: "2s" }],
        history: `sqlite:${join(dir, "history-b.db")}`,
        alerts: { webhook: receiver.url, secret: SECRET },
      },
      { PROBE_KEY: KEY },
    );
    const history = await openHistoryStore(config.history);
    const monitor = createMonitor({ config, history });
    try {
      await monitor.runOnce(); // baseline: up, no alert
      await monitor.runOnce();
      await monitor.flushAlerts();
      expect(receiver.got).toHaveLength(0);

      flaky.setTools([
        ...DEFAULT_TOOLS,
        { name: "delete_everything", description: "new tool", field: "confirm" },
      ]);
      await monitor.runOnce();
      await monitor.flushAlerts();
      expect(receiver.got.map((d) => JSON.parse(d.raw).kind)).toEqual(["schema_drift"]);

      await flaky.close();
      await monitor.runOnce(); // up → unreachable: one alert
      await monitor.runOnce(); // still unreachable: none
      await monitor.flushAlerts();
      expect(receiver.got).toHaveLength(2);
      const change = receiver.got[1]!;
      const body = JSON.parse(change.raw);
      expect(body).toMatchObject({ kind: "state_change", target: "flaky", from: "up", to: "unreachable" });
      // Sent by the gateway's alerter: same envelope fields, the monitor's own User-Agent.
      expect(body).toMatchObject({ service: "mcpgate", instance: expect.any(String) });
      expect(change.headers["user-agent"]).toBe("mcpgate-monitor/0.1");
      // The gateway's scheme: HMAC-SHA256 over "<timestamp>.<raw body>", computed independently here.
      const ts = String(change.headers["x-mcpgate-timestamp"]);
      expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(60);
      const expected = `sha256=${createHmac("sha256", SECRET).update(`${ts}.${change.raw}`).digest("hex")}`;
      expect(change.headers["x-mcpgate-signature"]).toBe(expected);
      expect(verifyWebhookPayload(change.raw, expected, ts, SECRET)).toBe(true);
      expect(verifyWebhookPayload(change.raw, expected, ts, "another-secret-0123456")).toBe(false);
      expect(verifyWebhookPayload(change.raw, expected, String(Number(ts) + 1), SECRET)).toBe(false);
      expect(change.raw).not.toContain(KEY);

      const events = await history.events("flaky", 10);
      expect(events.map((e) => e.kind)).toEqual(["state_change", "schema_drift"]);
      expect(events[1]!.detail.tools).toBe(3);
      const snap = await monitor.snapshot();
      expect(snap.targets[0]).toMatchObject({ name: "flaky", status: "unreachable", uptime24h: 60 });
    } finally {
      await history.close();
      await receiver.close();
    }
  });

  it("probes on schedule until stopped", async () => {
    const config = resolveMonitorConfig(
      {
        targets: [{ name: "api", url: target.url, keyEnv: "PROBE_KEY", interval: "150ms" }],
        history: "memory:",
      },
      { PROBE_KEY: KEY },
    );
    const history = await openHistoryStore(config.history);
    const monitor = createMonitor({ config, history });
    await monitor.start();
    await new Promise((r) => setTimeout(r, 1200));
    await monitor.stop();
    const rows = await history.results("api", 0);
    expect(rows.length).toBeGreaterThanOrEqual(3);
    expect(rows.length).toBeLessThanOrEqual(10);
    // The next probe is scheduled after the last one ends, at the interval -10 % at the earliest.
    const gaps = rows.slice(1).map((r, i) => r.at - rows[i]!.at);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(130);
    await new Promise((r) => setTimeout(r, 400));
    expect(await history.results("api", 0)).toHaveLength(rows.length);
  });

  it("serves /api/status and Prometheus /metrics with up, latency and per-step status", async () => {
    const config = resolveMonitorConfig(
      { targets: [{ name: "api", url: target.url, keyEnv: "PROBE_KEY" }], history: "memory:" },
      { PROBE_KEY: KEY },
    );
    const history = await openHistoryStore(config.history);
    const monitor = createMonitor({ config, history });
    await monitor.runOnce();
    const status = await startStatusServer(monitor, { host: "127.0.0.1", port: 0 });
    try {
      const api = (await (await fetch(`${status.url}api/status`)).json()) as { targets: unknown[] };
      expect(api.targets[0]).toMatchObject({ name: "api", status: "up", tools: 2, uptime24h: 100 });
      const metrics = await (await fetch(`${status.url}metrics`)).text();
      expect(metrics).toMatch(/mcpgate_probe_up\{target="api"\} 1/);
      expect(metrics).toMatch(/mcpgate_probe_latency_seconds\{target="api"\} \d/);
      expect(metrics).toMatch(/mcpgate_probe_step_ok\{target="api",step="tools\/list"\} 1/);
      expect(metrics).toMatch(/mcpgate_probe_step_http_status\{target="api",step="unauthenticated"\} 401/);
      expect(metrics + JSON.stringify(api)).not.toContain(KEY);
      expect((await fetch(`${status.url}nope`)).status).toBe(404);
    } finally {
      await status.close();
    }
  });

  it("alerts once when the TLS certificate expires within the configured days", async () => {
    const tls = tmp();
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3",
      "-subj", "/CN=localhost", "-keyout", join(tls, "key.pem"), "-out", join(tls, "cert.pem"),
    ], { stdio: "ignore" }); // biome-ignore format: argv list
    const server = createHttpsServer(
      { key: readFileSync(join(tls, "key.pem")), cert: readFileSync(join(tls, "cert.pem")) },
      (_q, s) => s.writeHead(404).end(),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const receiver = await startReceiver();
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
    const config = resolveMonitorConfig({
      targets: [{ name: "tls", url, timeout: "2s" }],
      history: "memory:",
      alerts: { webhook: receiver.url, secret: SECRET, certExpiryDays: 14 },
    });
    const monitor = createMonitor({ config, history: await openHistoryStore("memory:") });
    try {
      await monitor.runOnce();
      await monitor.runOnce();
      await monitor.flushAlerts();
      const kinds = receiver.got.map((d) => JSON.parse(d.raw));
      const cert = kinds.filter((k) => k.kind === "cert_expiry");
      expect(cert).toHaveLength(1);
      expect(cert[0].daysLeft).toBeLessThanOrEqual(3);
      expect((await monitor.snapshot()).targets[0]!.certExpiresAt).toBeGreaterThan(Date.now());
    } finally {
      server.close();
      await receiver.close();
      rmSync(tls, { recursive: true, force: true });
    }
  });
});

describe("monitor alerts through the gateway's alerter", () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined;
  afterEach(async () => {
    await receiver?.close();
  });

  it("retries a failing receiver and stops after a delivery", async () => {
    receiver = await startReceiver([503, 500]);
    const hook = createAlerter({ url: receiver.url, secret: SECRET, retryBaseMs: 10 });
    hook.send({ kind: "state_change", target: "x" });
    await hook.flush();
    expect(receiver.got).toHaveLength(3);
    // Every attempt carries the same signed body.
    expect(new Set(receiver.got.map((d) => d.raw)).size).toBe(1);
  });

  it("gives up after the bounded number of attempts and reports it", async () => {
    receiver = await startReceiver([500, 500, 500, 500, 500, 500]);
    const failures: unknown[] = [];
    const hook = createAlerter({
      url: receiver.url,
      secret: SECRET,
      retryBaseMs: 5,
      maxAttempts: 3,
      onOutcome: (kind, outcome, d) => failures.push({ kind, outcome, ...d }),
    });
    hook.send({ kind: "state_change", target: "x" });
    await hook.flush();
    expect(receiver.got).toHaveLength(3);
    expect(failures).toEqual([{ kind: "state_change", outcome: "failed", attempts: 3, reason: "HTTP 500" }]);
  });

  it("does not retry a 4xx other than 429", async () => {
    receiver = await startReceiver([400]);
    const hook = createAlerter({ url: receiver.url, secret: SECRET, retryBaseMs: 5 });
    hook.send({ kind: "state_change", target: "x" });
    await hook.flush();
    expect(receiver.got).toHaveLength(1);
  });

  it("returns from send at once while the receiver hangs", async () => {
    const hanging = createServer(() => {});
    await new Promise<void>((r) => hanging.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/`;
    const hook = createAlerter({ url, secret: SECRET, attemptTimeoutMs: 200, maxAttempts: 1 });
    const t0 = performance.now();
    hook.send({ kind: "state_change", target: "x" });
    expect(performance.now() - t0).toBeLessThan(20);
    await hook.flush();
    hanging.closeAllConnections();
    hanging.close();
  });
});

describe("monitor configuration", () => {
  it("names the field that is wrong", () => {
    const bad = (raw: unknown, env = {}) => {
      try {
        resolveMonitorConfig(raw, env);
      } catch (err) {
        expect(isMcpGateError(err, "ERR_CONFIG_INVALID")).toBe(true);
        return (err as Error).message;
      }
      throw new Error("expected a failure");
    };
    expect(bad({ targets: [] })).toMatch(/targets/);
    expect(bad({ targets: [{ name: "a", url: "ftp://x" }] })).toMatch(/targets\.0\.url/);
    expect(bad({ targets: [{ name: "a", url: "http://x", interval: "often" }] })).toMatch(
      /targets\.0\.interval/,
    );
    expect(bad({ targets: [{ name: "a", url: "http://x", keyEnv: "NOPE" }] })).toMatch(/NOPE is not set/);
    expect(bad({ targets: [{ name: "a", url: "http://x" }], alerts: { webhook: "http://h" } })).toMatch(
      /alerts\.secret/,
    );
    expect(bad({ targets: [{ name: "a", url: "http://x" }], history: "mysql://x" })).toMatch(/history/);
  });

  it("reads keys and ${VAR} from the environment and parses durations", () => {
    const c = resolveMonitorConfig(
      {
        targets: [
          { name: "a", url: "http://x/${P}", keyEnv: "K", interval: "30s", headers: { "X-T": "${T}" } },
        ],
        listen: "127.0.0.1:0",
      },
      { K: "k1", P: "mcp", T: "tenant" },
    );
    expect(c.targets[0]).toMatchObject({
      url: "http://x/mcp",
      key: "k1",
      intervalMs: 30_000,
      timeoutMs: 10_000,
      headers: { "X-T": "tenant" },
    });
    expect(c.listen).toEqual({ host: "127.0.0.1", port: 0 });
    expect(Object.isFrozen(c.targets[0])).toBe(true);
  });
});
