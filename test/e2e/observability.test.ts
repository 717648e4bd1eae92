import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/authn/api-key.js";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import type { AuditEvent } from "../../src/core/audit-event.js";
import { verifyWebhookPayload } from "../../src/core/webhook-signature.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { type JwksServer, makeKey, mint, startJwksServer, type TestKey } from "../authn/jwks-fixture.js";
import { INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";
import { metricValue, parsePrometheusText, type Sample } from "../observe/prom-text.js";
import { type Receiver, startReceiver } from "../observe/webhook-receiver.js";

const REDIS = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const WEBHOOK_SECRET = `whsec_${randomBytes(24).toString("hex")}`;
const ISSUER = "https://issuer.mcpgate.test";
const base62 = (n: number) =>
  Array.from(
    randomBytes(n),
    (b) => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[b % 62],
  ).join("");

/** The secret part of an mcpg_<id>_<secret> key (what must never appear, even without the prefix). */
const secretPart = (key: string) => key.split("_").slice(2).join("_");

function post(url: string, token: string | undefined, ip: string) {
  return rawPost(url, INIT, {
    ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
    "x-forwarded-for": ip,
  });
}

async function scrape(gw: TestGateway): Promise<{ text: string; samples: Sample[] }> {
  const res = await fetch(gw.observability.metricsServer!.url);
  const text = await res.text();
  return { text, samples: parsePrometheusText(text) };
}

function verifiedBodies(r: Receiver): Array<Record<string, unknown>> {
  return r.deliveries.map((d) => {
    expect(
      verifyWebhookPayload(
        d.body,
        d.headers["x-mcpgate-signature"] as string,
        d.headers["x-mcpgate-timestamp"] as string,
        WEBHOOK_SECRET,
      ),
    ).toBe(true);
    return JSON.parse(d.body) as Record<string, unknown>;
  });
}

describe("observability end to end: one gateway, every credential kind, debug logging", () => {
  let dir: string;
  let upstream: RecordingUpstream;
  let receiver: Receiver;
  let jwks: JwksServer;
  let signer: TestKey;
  let gw: TestGateway;
  const secrets: Record<string, string> = {};
  const headerSecret = `hdr-${base62(32)}`;
  const cookieSecret = `ck-${base62(32)}`;
  let bad401 = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-obs-"));
    const location = `sqlite:${join(dir, "keys.db")}`;
    const store = await openKeyStore(location);
    const good = await issueApiKey(store, { name: "good", scopes: ["tools:call"] });
    const revoked = await issueApiKey(store, { name: "revoked" });
    await store.revoke(revoked.record.id);
    await store.close();
    secrets.stored = good.key;
    secrets.revoked = revoked.key;
    secrets.wrongSecret = generateApiKey(good.record.id).key;
    secrets.static = `static-${base62(40)}`;
    secrets.wrongStatic = `static-${base62(40)}`;
    secrets.webhook = WEBHOOK_SECRET;
    secrets.header = headerSecret;
    secrets.cookie = cookieSecret;
    signer = await makeKey("ES256", "k1");
    jwks = await startJwksServer([signer.jwk]);
    upstream = await startRecordingUpstream();
    receiver = await startReceiver();
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url },
        auth: {
          apiKeys: { store: location },
          jwt: { issuer: ISSUER, jwksUri: jwks.url, algorithms: ["ES256"] },
        },
        logging: { level: "debug", audit: join(dir, "audit.jsonl"), redactHeaders: ["X-Upstream-Secret"] },
        metrics: { listen: "127.0.0.1:0" },
        alerts: { webhook: receiver.url, secret: WEBHOOK_SECRET },
        guard: { failures: 4, window: "1m", lockout: "1s", trustProxy: true },
      },
      { MCP_API_KEY: secrets.static },
    );
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: ISSUER, aud: gw.publicUrl, sub: "alice", scope: "tools:call" };
    secrets.jwt = await mint(signer, { ...claims, iat: now, exp: now + 300 });
    secrets.expiredJwt = await mint(signer, { ...claims, iat: now - 600, exp: now - 300 });
    const other = await makeKey("ES256", "k1");
    secrets.forgedJwt = await mint(other, { ...claims, iat: now, exp: now + 300 });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await receiver?.close();
    await jwks?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("lets valid static, stored and OAuth credentials call a tool, and answers 401 to invalid ones", async () => {
    const valid = [secrets.static!, secrets.stored!, secrets.jwt!];
    for (const [i, token] of valid.entries()) {
      const transport = new StreamableHTTPClientTransport(new URL(gw.url), {
        requestInit: {
          headers: {
            authorization: `Bearer ${token}`,
            cookie: `session=${cookieSecret}`,
            "x-upstream-secret": headerSecret,
            "x-forwarded-for": `198.51.100.${10 + i}`,
          },
        },
      });
      const client = new Client({ name: "obs-test", version: "1.0.0" });
      await client.connect(transport);
      const out = await client.callTool({ name: "echo", arguments: { message: "hi" } });
      expect(JSON.stringify(out.content)).toContain("hi");
      await client.close();
    }
    const invalid = [
      secrets.wrongStatic,
      secrets.wrongSecret,
      secrets.revoked,
      secrets.expiredJwt,
      secrets.forgedJwt,
      // The stored key with its last character changed (to one it is not: a random key ends in
      // "x" one time in 62, and would then be the valid key itself).
      `${secrets.stored!.slice(0, -1)}${secrets.stored!.endsWith("x") ? "y" : "x"}`,
    ];
    for (const [i, token] of invalid.entries()) {
      const res = await post(gw.url, token, `198.51.100.${30 + i}`);
      expect(res.status).toBe(401);
      bad401++;
    }
    expect((await post(gw.url, undefined, "198.51.100.50")).status).toBe(401);
    bad401++;
  });

  it("locks out a guessing source with 429 and Retry-After, while another source keeps working", async () => {
    const attacker = "203.0.113.66";
    for (let i = 0; i < 3; i++) expect((await post(gw.url, secrets.wrongStatic, attacker)).status).toBe(401);
    bad401 += 3;
    const locked = await post(gw.url, secrets.wrongStatic, attacker);
    expect(locked.status).toBe(429);
    expect(locked.headers.get("retry-after")).toBe("1");
    // Locked out even with a valid key: the guard answers before the credential is looked at.
    expect((await post(gw.url, secrets.static, attacker)).status).toBe(429);
    expect((await post(gw.url, secrets.static, "203.0.113.67")).status).toBe(200);
    await receiver.waitFor(1);
    const alerts = verifiedBodies(receiver);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ kind: "lockout", ip: attacker, seconds: 1 });
  });

  it("lets the source in again once the lockout has expired", async () => {
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await post(gw.url, secrets.static, "203.0.113.66")).status).toBe(200);
  });

  it("counts in /metrics exactly what the scenario did", async () => {
    const { samples } = await scrape(gw);
    expect(metricValue(samples, "mcpgate_requests_total", { status: "401" })).toBe(bad401);
    expect(metricValue(samples, "mcpgate_requests_total", { status: "429" })).toBe(2);
    // Every 401 except the missing credential, plus the failure that triggered the lockout.
    expect(metricValue(samples, "mcpgate_auth_failures_total")).toBe(bad401 + 1);
    expect(metricValue(samples, "mcpgate_auth_failures_total", { reason: "missing" })).toBe(1);
    expect(metricValue(samples, "mcpgate_lockouts_total")).toBe(1);
    expect(metricValue(samples, "mcpgate_tool_calls_total", { tool: "echo", decision: "allow" })).toBe(3);
    expect(metricValue(samples, "mcpgate_jwks_fetches_total")).toBeGreaterThanOrEqual(1);
    expect(metricValue(samples, "mcpgate_jwks_fetch_failures_total")).toBe(0);
    expect(metricValue(samples, "mcpgate_alerts_total", { kind: "lockout", outcome: "sent" })).toBe(1);
    expect(metricValue(samples, "mcpgate_request_duration_seconds_count")).toBeGreaterThan(bad401);
    expect(metricValue(samples, "mcpgate_upstream_duration_seconds_count")).toBeGreaterThan(0);
  });

  it("writes an audit line per security event, with time, actor, source and what happened", async () => {
    await gw.observability.observer.flush();
    const events = readFileSync(join(dir, "audit.jsonl"), "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as AuditEvent);
    for (const e of events) expect(Date.parse(e.time)).not.toBeNaN();
    const successes = events.filter((e) => e.type === "auth_success");
    const actors = new Set(successes.map((e) => e.actor));
    expect([...actors].some((a) => a?.startsWith("static:"))).toBe(true);
    expect([...actors].some((a) => a?.startsWith("mcpg_"))).toBe(true);
    expect([...actors].some((a) => a?.startsWith("oauth:"))).toBe(true);
    // Sampled: one per actor and source, though each client sent several requests.
    const pairs = successes.map((e) => `${e.actor}|${e.ip}`);
    expect(new Set(pairs).size).toBe(pairs.length);
    const failures = events.filter((e) => e.type === "auth_failure");
    expect(failures).toHaveLength(bad401 + 1);
    expect(failures.find((e) => e.ip === "198.51.100.32")?.reason).toBe("revoked");
    expect(failures.find((e) => e.ip === "198.51.100.50")?.reason).toBe("missing");
    expect(events.filter((e) => e.type === "lockout").map((e) => e.ip)).toEqual(["203.0.113.66"]);
  });

  it("leaks no secret into logs, audit lines, metrics or webhook deliveries", async () => {
    await gw.observability.observer.flush();
    const { text: metricsText } = await scrape(gw);
    const captured = [
      ...gw.logs,
      readFileSync(join(dir, "audit.jsonl"), "utf8"),
      metricsText,
      ...receiver.deliveries.map((d) => `${JSON.stringify(d.headers)}\n${d.body}`),
    ].join("\n");
    // The capture is real: debug logs carry the request headers, redacted.
    expect(gw.logs.some((l) => l.includes('"authorization":"[redacted]"'))).toBe(true);
    expect(gw.logs.some((l) => l.includes('"x-upstream-secret":"[redacted]"'))).toBe(true);
    const needles: Array<[string, string]> = [];
    for (const [name, value] of Object.entries(secrets)) {
      needles.push([name, value]);
      if (value.startsWith("mcpg_")) needles.push([`${name} (secret part)`, secretPart(value)]);
      if (value.startsWith("eyJ")) needles.push([`${name} (signature)`, value.split(".")[2]!]);
    }
    const hits = needles.filter(([, v]) => captured.includes(v)).map(([n]) => n);
    expect(hits).toEqual([]);
  });
});

describe("401 spike alert", () => {
  let upstream: RecordingUpstream;
  let receiver: Receiver;
  let gw: TestGateway;
  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    receiver = await startReceiver();
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url },
        metrics: { listen: "127.0.0.1:0" },
        alerts: { webhook: receiver.url, secret: WEBHOOK_SECRET },
        guard: { failures: 10_000 },
      },
      { MCP_API_KEY: `static-${base62(40)}` },
      "info",
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await receiver?.close();
  });

  it("sends exactly one signed webhook for a burst of 401s", async () => {
    for (let i = 0; i < 60; i++) expect((await post(gw.url, `guess-${i}`, "127.0.0.1")).status).toBe(401);
    await receiver.waitFor(1);
    await new Promise((r) => setTimeout(r, 300));
    const bodies = verifiedBodies(receiver);
    expect(bodies).toHaveLength(1);
    expect(bodies[0]).toMatchObject({ kind: "auth_failure_spike", bucketMs: 10_000 });
    expect(bodies[0]!.count as number).toBeGreaterThan(20);
    const { samples } = await scrape(gw);
    expect(metricValue(samples, "mcpgate_auth_failure_spikes_total")).toBe(1);
    expect(metricValue(samples, "mcpgate_auth_failures_total", { reason: "invalid" })).toBe(60);
  });
});

describe("lockout shared through Redis", () => {
  let upstream: RecordingUpstream;
  const gws: TestGateway[] = [];
  const key = `static-${base62(40)}`;
  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    const prefix = `mcpgate-obs-${randomBytes(6).toString("hex")}:`;
    for (let i = 0; i < 2; i++) {
      gws.push(
        await startTestGateway(
          {
            upstream: { url: upstream.url },
            state: { redis: REDIS, prefix },
            guard: { failures: 3, lockout: "2s", trustProxy: true },
          },
          { MCP_API_KEY: key },
          "info",
        ),
      );
    }
  });
  afterAll(async () => {
    await Promise.all(gws.map((g) => g.close()));
    await upstream?.close();
  });

  it("holds a lockout made on one instance on the other, for that source only", async () => {
    const [a, b] = gws as [TestGateway, TestGateway];
    const ip = "192.0.2.77";
    expect((await post(a.url, "wrong-1", ip)).status).toBe(401);
    expect((await post(b.url, "wrong-2", ip)).status).toBe(401);
    expect((await post(b.url, key, ip)).status).toBe(200);
    expect((await post(a.url, "wrong-3", ip)).status).toBe(429);
    const res = await post(b.url, key, ip);
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect((await post(b.url, key, "192.0.2.78")).status).toBe(200);
  });
});
