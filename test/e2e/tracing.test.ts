import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "../helpers/otlp-receiver.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * Traces through the real gateway, exported over OTLP/HTTP (protobuf) to a real receiver, with an
 * SDK 1.x upstream over HTTP that records the `traceparent` it receives, and an SDK stdio server
 * that reports the `params._meta` it receives (docs/tracing.md).
 */

const KEY = `trace-e2e-${randomBytes(16).toString("hex")}`;
const hex = (n: number) => randomBytes(n).toString("hex");

async function sdkClient(url: string, headers: Record<string, string>) {
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const client = new Client({ name: "trace-e2e", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

const childrenOf = (spans: ReceivedSpan[], parent: ReceivedSpan | undefined) =>
  spans.filter((s) => parent && s.parentSpanId === parent.spanId);

describe("tracing through the gateway to an HTTP upstream", () => {
  let otlp: OtlpReceiver;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-trace-"));
    otlp = await startOtlpReceiver();
    upstream = await startRecordingUpstream();
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url },
        tracing: { endpoint: otlp.url, serviceName: "mcpgate-e2e" },
        policy: { default: "deny", tools: [{ match: "echo", scopes: [] }] },
        logging: { level: "info", audit: join(dir, "audit.jsonl") },
      },
      { MCP_API_KEY: KEY, OTEL_BSP_SCHEDULE_DELAY: "50" },
      "info",
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await otlp?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("continues the client's trace: SERVER span, authentication and state children, a CLIENT span whose id the upstream receives", async () => {
    const traceId = hex(16);
    const clientSpan = hex(8);
    const client = await sdkClient(gw.url, {
      authorization: `Bearer ${KEY}`,
      traceparent: `00-${traceId}-${clientSpan}-01`,
    });
    const out = await client.callTool({ name: "echo", arguments: { message: "traced" } });
    expect(JSON.stringify(out.content)).toContain("traced");
    await client.close();

    const spans = await otlp.waitFor((all) =>
      all.some((s) => s.name === "tools/call echo" && s.kind === "SERVER" && s.traceId === traceId),
    );
    const server = spans.find((s) => s.name === "tools/call echo" && s.kind === "SERVER")!;
    expect(server.parentSpanId).toBe(clientSpan);
    expect(server.resource["service.name"]).toBe("mcpgate-e2e");
    expect(server.attributes).toMatchObject({
      "http.request.method": "POST",
      "url.path": "/mcp",
      "http.response.status_code": 200,
      "mcp.method.name": "tools/call",
      "gen_ai.tool.name": "echo",
      "mcpgate.decision": "allow",
    });
    expect(String(server.attributes["mcp.session.id"])).toMatch(/^.{1,8}…?$/);
    expect(server.attributes["mcpgate.principal"]).toMatch(/^static:[0-9a-f]{8}$/);
    expect(server.status.code).toBe("UNSET");

    const children = childrenOf(spans, server);
    const auth = children.find((s) => s.name === "mcpgate.authenticate");
    expect(auth?.attributes).toMatchObject({
      "mcpgate.auth.verifier": "static_key",
      "mcpgate.auth.result": "ok",
      "mcpgate.auth.cache_hit": true,
    });
    const admit = children.find((s) => s.name === "mcpgate.state.admit");
    expect(admit?.attributes).toMatchObject({
      "mcpgate.store": "memory",
      "mcpgate.state.session_checked": true,
    });
    const call = children.find((s) => s.kind === "CLIENT");
    expect(call?.attributes).toMatchObject({
      "mcp.method.name": "tools/call",
      "http.response.status_code": 200,
      "url.full": upstream.url,
    });

    // The upstream received the CLIENT span's context, never the client's own.
    const seen = upstream.seen.find((r) => r.body.includes('"tools/call"'));
    expect(seen?.headers.traceparent).toBe(`00-${traceId}-${call?.spanId}-01`);
    expect(seen?.headers.traceparent).not.toContain(clientSpan);
  });

  it("starts a new trace without a traceparent and hands it to the upstream", async () => {
    const res = await rawPost(gw.url, INIT, { authorization: `Bearer ${KEY}` });
    expect(res.status).toBe(200);
    const spans = await otlp.waitFor((all) =>
      all.some((s) => s.name === "initialize" && s.kind === "SERVER" && s.parentSpanId === ""),
    );
    const server = spans.find((s) => s.name === "initialize" && s.parentSpanId === "")!;
    const bind = spans.find((s) => s.traceId === server.traceId && s.name === "mcpgate.state.bind_session");
    expect(
      bind,
      spans
        .filter((s) => s.traceId === server.traceId)
        .map((s) => `${s.name}<${s.parentSpanId}`)
        .join(", "),
    ).toBeDefined();
    const seen = upstream.seen.filter((r) => r.body.includes('"initialize"')).at(-1);
    expect(seen?.headers.traceparent).toMatch(new RegExp(`^00-${server.traceId}-[0-9a-f]{16}-01$`));
  });

  describe("refusals are error spans with their status code", () => {
    it("401 for a wrong key", async () => {
      const traceId = hex(16);
      const res = await rawPost(gw.url, INIT, {
        authorization: "Bearer wrong-key-for-trace-test",
        traceparent: `00-${traceId}-${hex(8)}-01`,
      });
      expect(res.status).toBe(401);
      const spans = await otlp.waitFor((all) =>
        all.some((s) => s.traceId === traceId && s.kind === "SERVER"),
      );
      const server = spans.find((s) => s.traceId === traceId && s.kind === "SERVER")!;
      expect(server.status).toEqual({ code: "ERROR", message: "401" });
      expect(server.attributes["http.response.status_code"]).toBe(401);
      expect(server.attributes["error.type"]).toBe("401");
      const auth = childrenOf(spans, server).find((s) => s.name === "mcpgate.authenticate");
      expect(auth?.status.code).toBe("ERROR");
      expect(spans.some((s) => s.traceId === traceId && s.kind === "CLIENT")).toBe(false);
    });

    it("a tool the policy denies (answered 200 with a tool error) never reaches the upstream", async () => {
      const traceId = hex(16);
      const client = await sdkClient(gw.url, {
        authorization: `Bearer ${KEY}`,
        traceparent: `00-${traceId}-${hex(8)}-01`,
      });
      const out = await client.callTool({ name: "add", arguments: { a: 1, b: 2 } });
      expect(out.isError).toBe(true);
      await client.close();
      const spans = await otlp.waitFor((all) =>
        all.some((s) => s.traceId === traceId && s.name === "tools/call add"),
      );
      const server = spans.find((s) => s.traceId === traceId && s.name === "tools/call add")!;
      expect(server.status.code).toBe("ERROR");
      expect(server.attributes["mcpgate.decision"]).not.toBe("allow");
      expect(childrenOf(spans, server).some((s) => s.kind === "CLIENT")).toBe(false);
    });
  });

  it("puts trace_id on the request log line and on audit events", async () => {
    const traceId = hex(16);
    await rawPost(gw.url, INIT, {
      authorization: "Bearer another-wrong-key",
      traceparent: `00-${traceId}-${hex(8)}-01`,
    });
    await otlp.waitFor((all) => all.some((s) => s.traceId === traceId));
    await gw.observability.observer.flush();
    const lines = gw.logs.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.some((l) => l.msg === "request" && l.trace_id === traceId)).toBe(true);
    const audit = readFileSync(join(dir, "audit.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit.some((e) => e.type === "auth_failure" && e.trace_id === traceId)).toBe(true);
  });
});

describe("tracing through the gateway to a stdio upstream", () => {
  let otlp: OtlpReceiver;
  let gw: TestGateway;

  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    gw = await startTestGateway(
      {
        upstream: {
          command: [process.execPath, join(import.meta.dirname, "fixtures/trace-meta-server.mjs")],
        },
        tracing: { endpoint: otlp.url },
      },
      { MCP_API_KEY: KEY, OTEL_BSP_SCHEDULE_DELAY: "50" },
      "info",
    );
  });
  afterAll(async () => {
    await gw?.close();
    await otlp?.close();
  });

  it("gives the stdio server the CLIENT span's context in params._meta, replacing the client's", async () => {
    const traceId = hex(16);
    const client = await sdkClient(gw.url, {
      authorization: `Bearer ${KEY}`,
      traceparent: `00-${traceId}-${hex(8)}-01`,
    });
    const out = await client.callTool({
      name: "meta",
      arguments: {},
      _meta: { traceparent: `00-${hex(16)}-${hex(8)}-01`, progressToken: "p-1" },
    });
    await client.close();
    const reported = JSON.parse((out.content as Array<{ text: string }>)[0]!.text) as {
      meta: Record<string, unknown>;
      extracted: { traceId: string; spanId: string } | null;
    };
    const spans = await otlp.waitFor((all) =>
      all.some((s) => s.traceId === traceId && s.name === "tools/call meta"),
    );
    const server = spans.find((s) => s.traceId === traceId && s.name === "tools/call meta")!;
    const call = childrenOf(spans, server).find((s) => s.kind === "CLIENT");
    expect(call?.attributes["network.transport"]).toBe("pipe");
    expect(reported.extracted).toEqual({ traceId, spanId: call?.spanId, flags: 1 });
    expect(reported.meta.traceparent).toBe(`00-${traceId}-${call?.spanId}-01`);
    // Other _meta entries are kept (the progress token is the gateway's per-session one, mapped back).
    expect(reported.meta.progressToken).toBeDefined();
  });
});

describe("tracing with the shared state on Redis", () => {
  const REDIS = process.env.MCPGATE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
  let otlp: OtlpReceiver;
  let upstream: RecordingUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    upstream = await startRecordingUpstream();
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url },
        state: { redis: REDIS, prefix: `mcpgate-trace-${hex(4)}:` },
        rateLimit: { perPrincipal: { limit: 1000, window: "1m" } },
        tracing: { endpoint: otlp.url },
      },
      { MCP_API_KEY: KEY, OTEL_BSP_SCHEDULE_DELAY: "50" },
      "info",
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await otlp?.close();
  });

  it("the session check and rate limit are one CLIENT span to Redis, child of the request", async () => {
    const traceId = hex(16);
    const client = await sdkClient(gw.url, {
      authorization: `Bearer ${KEY}`,
      traceparent: `00-${traceId}-${hex(8)}-01`,
    });
    await client.callTool({ name: "echo", arguments: { message: "r" } });
    await client.close();
    const spans = await otlp.waitFor((all) =>
      all.some((s) => s.traceId === traceId && s.name === "tools/call echo"),
    );
    const server = spans.find((s) => s.traceId === traceId && s.name === "tools/call echo")!;
    const admit = childrenOf(spans, server).find((s) => s.name === "mcpgate.state.admit");
    expect(admit?.kind).toBe("CLIENT");
    expect(admit?.attributes).toMatchObject({
      "mcpgate.store": "redis",
      "mcpgate.state.session_checked": true,
      "mcpgate.state.buckets": 1,
      "mcpgate.state.rate_limited": false,
      "mcpgate.state.session_status": "ok",
    });
  });
});
