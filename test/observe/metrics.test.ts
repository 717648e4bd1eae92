import { afterAll, describe, expect, it } from "vitest";
import {
  createMetrics,
  type MetricsServer,
  parseListen,
  startMetricsServer,
} from "../../src/observe/metrics.js";
import { metricValue, parsePrometheusText } from "./prom-text.js";

describe("metrics", () => {
  const servers: MetricsServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it("counts requests, failures, tool calls and latency in the Prometheus text format", async () => {
    let sessions = 3;
    const m = createMetrics({ sessionCount: async () => sessions, defaultMetrics: false });
    m.request({
      httpMethod: "POST",
      rpcMethod: "tools/call",
      tool: "echo",
      status: 200,
      decision: "allow",
      latencyMs: 12,
      upstreamMs: 8,
    });
    m.request({
      httpMethod: "POST",
      rpcMethod: "made/up",
      status: 401,
      decision: "unauthenticated",
      latencyMs: 1,
    });
    m.authFailure("invalid");
    m.authFailure("invalid");
    m.authFailure("expired");
    m.toolCall("echo", "allow");
    m.rateLimited();
    m.lockout();
    m.storeError("state");
    m.jwksFetch("ok");
    m.jwksFetch("error");
    const s = parsePrometheusText(await m.text());
    expect(
      metricValue(s, "mcpgate_requests_total", { method: "POST", rpc_method: "tools/call", status: "200" }),
    ).toBe(1);
    expect(metricValue(s, "mcpgate_requests_total", { rpc_method: "other", status: "401" })).toBe(1);
    expect(metricValue(s, "mcpgate_auth_failures_total", { reason: "invalid" })).toBe(2);
    expect(metricValue(s, "mcpgate_auth_failures_total", { reason: "expired" })).toBe(1);
    expect(metricValue(s, "mcpgate_tool_calls_total", { tool: "echo", decision: "allow" })).toBe(1);
    expect(metricValue(s, "mcpgate_rate_limit_hits_total")).toBe(1);
    expect(metricValue(s, "mcpgate_lockouts_total")).toBe(1);
    expect(metricValue(s, "mcpgate_store_errors_total", { store: "state" })).toBe(1);
    expect(metricValue(s, "mcpgate_jwks_fetches_total")).toBe(2);
    expect(metricValue(s, "mcpgate_jwks_fetch_failures_total")).toBe(1);
    expect(metricValue(s, "mcpgate_active_sessions")).toBe(3);
    expect(metricValue(s, "mcpgate_request_duration_seconds_count", { method: "POST" })).toBe(2);
    expect(metricValue(s, "mcpgate_request_duration_seconds_bucket", { method: "POST", le: "0.025" })).toBe(
      2,
    );
    expect(metricValue(s, "mcpgate_upstream_duration_seconds_sum")).toBeCloseTo(0.008);
    sessions = 5;
    expect(metricValue(parsePrometheusText(await m.text()), "mcpgate_active_sessions")).toBe(5);
  });

  it("caps distinct tool labels at maxTools and folds the rest into other", async () => {
    const m = createMetrics({ maxTools: 200, defaultMetrics: false });
    for (let i = 0; i < 250; i++) m.toolCall(`tool_${i}`, "allow");
    m.toolCall("tool_0", "allow");
    const s = parsePrometheusText(await m.text()).filter((x) => x.name === "mcpgate_tool_calls_total");
    const tools = new Set(s.map((x) => x.labels.tool));
    expect(tools.size).toBe(201);
    expect(metricValue(s, "mcpgate_tool_calls_total", { tool: "other" })).toBe(50);
    expect(metricValue(s, "mcpgate_tool_calls_total", { tool: "tool_0" })).toBe(2);
  });

  it("escapes odd tool names so the exposition still parses", async () => {
    const m = createMetrics({ defaultMetrics: false });
    m.toolCall('we"ird\\name\nwith newline', "denied");
    const s = parsePrometheusText(await m.text());
    expect(metricValue(s, "mcpgate_tool_calls_total", { decision: "denied" })).toBe(1);
  });

  it("serves /metrics on its own listener and nothing else", async () => {
    const m = createMetrics();
    const srv = await startMetricsServer(m, "127.0.0.1:0");
    servers.push(srv);
    const res = await fetch(srv.url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const samples = parsePrometheusText(await res.text());
    expect(samples.some((x) => x.name === "process_cpu_user_seconds_total")).toBe(true);
    expect((await fetch(srv.url.replace("/metrics", "/mcp"))).status).toBe(404);
  });

  it("parses listen addresses and refuses bad ones", () => {
    expect(parseListen("127.0.0.1:9464")).toEqual({ host: "127.0.0.1", port: 9464 });
    expect(parseListen("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(parseListen(":9464")).toEqual({ host: "127.0.0.1", port: 9464 });
    expect(() => parseListen("9464")).toThrow(/metrics.listen/);
    expect(() => parseListen("host:99999")).toThrow(/metrics.listen/);
  });
});
