import { trace } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import { activeTraceId, startRequestSpan, traceLogFields } from "../../src/observe/tracing.js";
import { startUpstreamSpan, withTraceMeta } from "../../src/observe/tracing-upstream.js";
import { traceStateStore, traceVerifier } from "../../src/observe/tracing-wrappers.js";

/**
 * Without an SDK (the library's default, and the gateway's when tracing is not configured) every
 * tracing call is the API's no-op: nothing recorded, nothing propagated, results untouched.
 */
describe("tracing without an SDK", () => {
  it("has no tracer provider behind the API", () => {
    const span = trace.getTracer("probe").startSpan("x");
    expect(span.isRecording()).toBe(false);
    expect(trace.isSpanContextValid(span.spanContext())).toBe(false);
  });

  it("returns the shared no-op request trace, even for a request carrying a traceparent", () => {
    const a = startRequestSpan({
      method: "POST",
      path: "/mcp",
      headers: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
    });
    const b = startRequestSpan({ method: "GET", path: "/mcp", headers: {} });
    expect(a).toBe(b);
    expect(a.traceId).toBeUndefined();
    expect(a.run(() => 5)).toBe(5);
    expect(a.run(() => traceLogFields())).toEqual({});
    expect(a.run(() => activeTraceId())).toBeUndefined();
  });

  it("adds no traceparent to an upstream request and no _meta to a stdio message", () => {
    const up = startUpstreamSpan({ upstream: "default", transport: "http", url: "http://127.0.0.1:1/mcp" });
    const headers: Record<string, string> = {};
    up.inject(headers);
    expect(headers).toEqual({});
    const message = { jsonrpc: "2.0", id: 1, method: "tools/list" };
    expect(withTraceMeta(message, up.metaFields())).toBe(message);
  });

  it("leaves wrapped verifiers and stores answering exactly as before", async () => {
    const result = { ok: true as const, identity: { principal: "static" } };
    const v = { kind: "static_key", verify: async (_t: string) => result };
    expect(await traceVerifier(v).verify("k")).toBe(result);
    const admitted = { rate: { ok: true } };
    const s = traceStateStore(
      {
        admit: async (_input: { buckets: readonly unknown[] }) => admitted,
        bindSession: async (_id: string, _owner: unknown, _ttl: number) => {},
        removeSession: async (_id: string) => {},
      },
      "memory",
    );
    expect(await s.admit({ buckets: [] })).toBe(admitted);
  });
});
