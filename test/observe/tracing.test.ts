import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/core/audit-event.js";
import { createAssertionSigner } from "../../src/identity/assertion-signer.js";
import { createUpstreamIdentity } from "../../src/identity/upstream-identity.js";
import { createLogger } from "../../src/observe/logger.js";
import { createObserver } from "../../src/observe/observer.js";
import { activeTraceId, startRequestSpan, traceLogFields } from "../../src/observe/tracing.js";
import { traceAuthHttpCalls } from "../../src/observe/tracing-http.js";
import { startUpstreamSpan, withTraceMeta } from "../../src/observe/tracing-upstream.js";
import {
  traceKeyStore,
  traceStateStore,
  traceUpstreamIdentity,
  traceVerifier,
} from "../../src/observe/tracing-wrappers.js";
import { openSigningKeyStore } from "../../src/stores/signing-keys.js";
import { captureStream } from "../helpers/gateway.js";

/**
 * The library's tracing (src/observe/tracing*.ts) against the official SDK with its in-memory
 * exporter, registered globally as an application would.
 */

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });

beforeAll(() => {
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});
afterAll(async () => {
  await provider.shutdown();
  trace.disable();
  context.disable();
  propagation.disable();
});
afterEach(() => exporter.reset());

const REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const REMOTE_PARENT = "00f067aa0ba902b7";
const TOKEN = "mcpg_Ab3dEf9h_0123456789abcdefghijklmnopqrstuvwxyzABCD";

const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
const byName = (name: string) => spans().find((s) => s.name === name);
const parentOf = (s: ReadableSpan | undefined) => s?.parentSpanContext?.spanId;

function allSpanStrings(): string {
  return JSON.stringify(
    spans().map((s) => ({ name: s.name, attributes: s.attributes, status: s.status, events: s.events })),
  );
}

describe("the request span", () => {
  it("continues an incoming traceparent as a SERVER span with HTTP and MCP attributes", () => {
    const t = startRequestSpan({
      method: "post",
      path: "/mcp",
      headers: { traceparent: `00-${REMOTE_TRACE}-${REMOTE_PARENT}-01`, authorization: `Bearer ${TOKEN}` },
      remoteAddress: "127.0.0.1",
      upstream: "notes",
    });
    expect(t.traceId).toBe(REMOTE_TRACE);
    t.describe({
      mcpMethod: "tools/call",
      tool: "echo",
      sessionId: "5f0c2a9e-1111-2222-3333-444455556666",
      principal: "mcpg_Ab3dEf9h",
      protocolVersion: "2025-11-25",
      jsonrpcId: 7,
    });
    t.end({ status: 200, decision: "allow" });
    const [s] = spans();
    expect(s?.kind).toBe(SpanKind.SERVER);
    expect(s?.name).toBe("tools/call echo");
    expect(s?.spanContext().traceId).toBe(REMOTE_TRACE);
    expect(parentOf(s)).toBe(REMOTE_PARENT);
    expect(s?.attributes).toMatchObject({
      "http.request.method": "POST",
      "url.path": "/mcp",
      "client.address": "127.0.0.1",
      "http.response.status_code": 200,
      "mcp.method.name": "tools/call",
      "gen_ai.tool.name": "echo",
      "mcp.session.id": "5f0c2a9e…",
      "mcp.protocol.version": "2025-11-25",
      "jsonrpc.request.id": "7",
      "mcpgate.principal": "mcpg_Ab3dEf9h",
      "mcpgate.decision": "allow",
      "mcpgate.upstream": "notes",
    });
    expect(s?.status.code).toBe(SpanStatusCode.UNSET);
    expect(allSpanStrings()).not.toContain(TOKEN);
    expect(allSpanStrings()).not.toContain("1111-2222");
  });

  it("starts a new trace when the traceparent is malformed", () => {
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: { traceparent: "00-zz-yy-01" } });
    t.end({ status: 200, decision: "allow" });
    const [s] = spans();
    expect(s?.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(s?.parentSpanContext).toBeUndefined();
  });

  describe("refusals have error status and the status code", () => {
    it.each([
      [401, "unauthenticated"],
      [403, "insufficient_scope"],
      [404, "session_unknown"],
      [429, "rate_limited"],
      [502, "upstream_error"],
    ])("%i %s", (status, decision) => {
      const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
      t.end({ status, decision });
      const [s] = spans();
      expect(s?.status).toEqual({ code: SpanStatusCode.ERROR, message: String(status) });
      expect(s?.attributes["http.response.status_code"]).toBe(status);
      expect(s?.attributes["error.type"]).toBe(String(status));
      expect(s?.attributes["mcpgate.decision"]).toBe(decision);
    });

    it("a tool denied with a 200 tool-error result is an error too", () => {
      const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
      t.end({ status: 200, decision: "tool_denied" });
      expect(spans()[0]?.status).toEqual({ code: SpanStatusCode.ERROR, message: "tool_denied" });
    });
  });

  it("is an INTERNAL child, not a second SERVER span, under an HTTP instrumentation's span", () => {
    const outer = trace.getTracer("http-instrumentation").startSpan("POST", { kind: SpanKind.SERVER });
    context.with(trace.setSpan(context.active(), outer), () => {
      const t = startRequestSpan({
        method: "POST",
        path: "/mcp",
        headers: { traceparent: `00-${REMOTE_TRACE}-${REMOTE_PARENT}-01` },
      });
      t.end({ status: 200, decision: "allow" });
    });
    outer.end();
    const inner = spans().find((s) => s.name === "POST /mcp");
    expect(inner?.kind).toBe(SpanKind.INTERNAL);
    expect(parentOf(inner)).toBe(outer.spanContext().spanId);
  });

  it("puts trace_id and span_id on log lines written inside the request", () => {
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
    const fields = t.run(() => traceLogFields());
    expect(fields.trace_id).toBe(t.traceId);
    expect(fields.span_id).toMatch(/^[0-9a-f]{16}$/);
    expect(t.run(() => activeTraceId())).toBe(t.traceId);
    expect(traceLogFields()).toEqual({});
    t.end({ status: 200, decision: "allow" });
  });
});

describe("child spans of the parts plugged into the gate", () => {
  const okVerifier = {
    kind: "api_key",
    accepts: (t: string) => t.startsWith("mcpg_"),
    verify: async (_t: string) => ({ ok: true as const, identity: { principal: "key:Ab3dEf9h" } }),
    extra: 42,
  };

  it("authentication: verifier kind, result, cache hit; other properties untouched", async () => {
    const traced = traceVerifier(okVerifier);
    expect(traced.extra).toBe(42);
    expect(traced.accepts(TOKEN)).toBe(true);
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
    const r = await t.run(() => traced.verify(TOKEN));
    t.end({ status: 200, decision: "allow" });
    expect(r.ok).toBe(true);
    const auth = byName("mcpgate.authenticate");
    expect(auth?.attributes).toMatchObject({
      "mcpgate.auth.verifier": "api_key",
      "mcpgate.auth.result": "ok",
      "mcpgate.auth.cache_hit": true,
    });
    expect(parentOf(auth)).toBe(byName("POST /mcp")?.spanContext().spanId);
    expect(allSpanStrings()).not.toContain(TOKEN);
  });

  it("a key-store lookup is a child span and makes the authentication a cache miss", async () => {
    const store = traceKeyStore({ get: async (id: string) => ({ id }), close: async () => {} }, "sqlite");
    const verifier = traceVerifier({
      kind: "api_key",
      verify: async (token: string) => {
        await store.get(token.slice(5, 13));
        return { ok: false as const, reason: "revoked" };
      },
    });
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
    await t.run(() => verifier.verify(TOKEN));
    t.end({ status: 401, decision: "unauthenticated" });
    const auth = byName("mcpgate.authenticate");
    const get = byName("mcpgate.keys.get");
    expect(auth?.attributes["mcpgate.auth.cache_hit"]).toBe(false);
    expect(auth?.attributes["mcpgate.auth.result"]).toBe("revoked");
    expect(auth?.status).toEqual({ code: SpanStatusCode.ERROR, message: "revoked" });
    expect(get?.kind).toBe(SpanKind.CLIENT);
    expect(get?.attributes).toMatchObject({ "mcpgate.store": "sqlite", "mcpgate.store.operation": "get" });
    expect(parentOf(get)).toBe(auth?.spanContext().spanId);
    expect(allSpanStrings()).not.toContain(TOKEN);
  });

  it("the JWKS fetch or introspection call made during authentication is a CLIENT span (undici and fetch)", async () => {
    let server: Server | undefined;
    const stop = traceAuthHttpCalls();
    try {
      server = createServer((req, res) => {
        res.writeHead(req.url?.startsWith("/jwks") ? 200 : 500, { "content-type": "application/json" });
        res.end("{}");
      });
      await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const { request } = await import("undici");
      const verifier = traceVerifier({
        kind: "oauth2",
        verify: async (_token: string) => {
          await (await fetch(`${base}/jwks?client_secret=s3cr3t`)).text(); // Node's fetch (jose)
          await (await request(`${base}/introspect`, { method: "POST", body: "token=x" })).body.text(); // undici (fetchJson)
          return { ok: false as const, reason: "invalid" };
        },
      });
      // Outside an authentication, an HTTP call gets no span from us.
      await (await fetch(`${base}/jwks`)).text();
      const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
      await t.run(() => verifier.verify("eyJhbGciOi.opaque.token"));
      t.end({ status: 401, decision: "unauthenticated" });
      const auth = byName("mcpgate.authenticate");
      const get = byName("GET");
      const post = byName("POST");
      expect(spans().filter((s) => s.name === "GET")).toHaveLength(1);
      expect(auth?.attributes["mcpgate.auth.cache_hit"]).toBe(false);
      expect(get?.kind).toBe(SpanKind.CLIENT);
      expect(get?.attributes).toMatchObject({
        "url.full": `${base}/jwks`,
        "server.address": "127.0.0.1",
        "http.response.status_code": 200,
      });
      expect(post?.attributes["http.response.status_code"]).toBe(500);
      expect(post?.status.code).toBe(SpanStatusCode.ERROR);
      expect(parentOf(get)).toBe(auth?.spanContext().spanId);
      expect(parentOf(post)).toBe(auth?.spanContext().spanId);
      expect(allSpanStrings()).not.toContain("s3cr3t");
    } finally {
      stop();
      await new Promise((r) => server?.close(r));
    }
  });

  it("the state store: admit, bind and remove are child spans; a failure records its code only", async () => {
    const store = traceStateStore(
      {
        admit: async (_input: { session?: unknown; buckets: readonly unknown[] }) => ({
          session: { status: "mismatch" },
          rate: { ok: false },
        }),
        bindSession: async (_id: string, _owner: unknown, _ttl: number) => {},
        removeSession: async (_id: string) => {
          throw Object.assign(new Error("connect ECONNREFUSED redis://:hunter2@10.0.0.1:6379"), {
            code: "ECONNREFUSED",
          });
        },
        sessionCount: async () => 3,
      },
      "redis",
    );
    expect(await store.sessionCount()).toBe(3);
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
    await t.run(async () => {
      await store.admit({ session: { id: "abcdefgh-secret-rest" }, buckets: [{}, {}] });
      await store.bindSession("abcdefgh-secret-rest", { principal: "static" }, 1000);
      await expect(store.removeSession("abcdefgh-secret-rest")).rejects.toThrow("ECONNREFUSED");
    });
    t.end({ status: 503, decision: "store_unavailable" });
    const admit = byName("mcpgate.state.admit");
    expect(admit?.kind).toBe(SpanKind.CLIENT);
    expect(admit?.attributes).toMatchObject({
      "mcpgate.store": "redis",
      "mcpgate.state.session_checked": true,
      "mcpgate.state.buckets": 2,
      "mcpgate.state.session_status": "mismatch",
      "mcpgate.state.rate_limited": true,
    });
    expect(byName("mcpgate.state.bind_session")).toBeDefined();
    const removed = byName("mcpgate.state.remove_session");
    expect(removed?.status).toEqual({ code: SpanStatusCode.ERROR, message: "ECONNREFUSED" });
    expect(allSpanStrings()).not.toContain("hunter2");
    expect(allSpanStrings()).not.toContain("secret-rest");
  });

  it("wrapping twice (a gate built from another gate's verifiers) makes one span, not two", async () => {
    const twice = traceVerifier(traceVerifier(okVerifier));
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
    await t.run(() => twice.verify(TOKEN));
    t.end({ status: 200, decision: "allow" });
    expect(spans().filter((s) => s.name === "mcpgate.authenticate")).toHaveLength(1);
  });

  it("outside a request (no recording parent) a wrapped call makes no span", async () => {
    const traced = traceVerifier(okVerifier);
    await traced.verify(TOKEN);
    expect(spans()).toHaveLength(0);
  });
});

describe("telling the upstream who calls", () => {
  it("signing an identity assertion is a child span that never holds the assertion", async () => {
    const keys = await openSigningKeyStore("memory:");
    const signer = createAssertionSigner({ keys, issuer: "https://gw.example.com" });
    const hook = traceUpstreamIdentity(
      createUpstreamIdentity({
        upstream: "notes",
        mode: "assertion",
        audience: "http://127.0.0.1:3001/mcp",
        signer,
      }),
    );
    expect(hook.header).toBe("authorization");
    const identity = {
      principal: "key:Ab3dEf9h",
      kind: "api_key" as const,
      subject: "Ab3dEf9h",
      scopes: ["notes:read"],
    };
    const t = startRequestSpan({ method: "POST", path: "/notes/mcp", headers: {} });
    const cred = await t.run(() => hook.credential({ identity, sessionId: "s-1" }));
    t.end({ status: 200, decision: "allow" });
    await keys.close();
    expect(cred.ok).toBe(true);
    const jwt = cred.ok ? cred.headers.authorization!.slice("Bearer ".length) : "";
    expect(jwt.split(".")).toHaveLength(3);
    const span = byName("mcpgate.identity");
    expect(span?.attributes["mcpgate.identity.mode"]).toBe("assertion");
    expect(parentOf(span)).toBe(byName("POST /notes/mcp")?.spanContext().spanId);
    for (const part of jwt.split(".")) expect(allSpanStrings()).not.toContain(part);
  });
});

describe("the upstream call", () => {
  it("is a CLIENT span whose context the HTTP upstream receives as traceparent", () => {
    const t = startRequestSpan({
      method: "POST",
      path: "/mcp",
      headers: { traceparent: `00-${REMOTE_TRACE}-${REMOTE_PARENT}-01` },
    });
    const headers: Record<string, string> = {};
    t.run(() => {
      const up = startUpstreamSpan({
        upstream: "notes",
        transport: "http",
        url: "http://user:pw@127.0.0.1:3001/k/sk-live-4f9a1c2e5b7d9f11aa/v1/2025-06-18/mcp?token=abc",
        mcpMethod: "tools/call",
        tool: "echo",
      });
      up.inject(headers);
      up.end({ status: 200 });
    });
    t.end({ status: 200, decision: "allow" });
    const client = spans().find((s) => s.kind === SpanKind.CLIENT);
    expect(client?.attributes).toMatchObject({
      // A key in the path is scrubbed; words, versions and dates stay readable.
      "url.full": "http://127.0.0.1:3001/k/REDACTED/v1/2025-06-18/mcp",
      "server.address": "127.0.0.1",
      "server.port": 3001,
      "mcpgate.upstream": "notes",
      "http.response.status_code": 200,
    });
    expect(headers.traceparent).toBe(`00-${REMOTE_TRACE}-${client?.spanContext().spanId}-01`);
    expect(allSpanStrings()).not.toContain("pw@");
    expect(allSpanStrings()).not.toContain("token=abc");
    expect(allSpanStrings()).not.toContain("4f9a1c2e5b7d9f11");
  });

  it("says neither in url.full nor in server.address a key that stands in the upstream's host name", () => {
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
    t.run(() => {
      const up = startUpstreamSpan({
        upstream: "notes",
        transport: "http",
        url: "https://sk-live-abcdef0123456789abcdef.tenant.example.com:8443/mcp",
      });
      up.end({ status: 200 });
    });
    t.end({ status: 200, decision: "allow" });
    const client = spans().find((s) => s.kind === SpanKind.CLIENT);
    expect(client?.attributes).toMatchObject({
      "url.full": "https://REDACTED.tenant.example.com:8443/mcp",
      "server.address": "REDACTED.tenant.example.com",
      "server.port": 8443,
    });
    expect(allSpanStrings()).not.toContain("0123456789abcdef");
  });

  it("gives a stdio upstream the trace context in params._meta, replacing the client's", () => {
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
    const message = {
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "echo", _meta: { progressToken: 5, traceparent: "00-client-value" } },
    };
    const out = t.run(() => {
      const up = startUpstreamSpan({ upstream: "local", transport: "stdio" });
      const m = withTraceMeta(message, up.metaFields());
      up.end({ error: "upstream_timeout" });
      return m;
    });
    t.end({ status: 504, decision: "upstream_timeout" });
    const client = spans().find((s) => s.kind === SpanKind.CLIENT);
    expect(out.params._meta).toEqual({
      progressToken: 5,
      traceparent: `00-${t.traceId}-${client?.spanContext().spanId}-01`,
    });
    expect(message.params._meta.traceparent).toBe("00-client-value");
    expect(client?.status).toEqual({ code: SpanStatusCode.ERROR, message: "upstream_timeout" });
    expect(
      withTraceMeta({ jsonrpc: "2.0", id: 2, method: "x", params: [1] }, { traceparent: "00-a" }).params,
    ).toEqual([1]);
    const bare = withTraceMeta(
      { jsonrpc: "2.0", method: "notifications/initialized" },
      { traceparent: "00-a" },
    );
    expect(bare).toEqual({
      jsonrpc: "2.0",
      method: "notifications/initialized",
      params: { _meta: { traceparent: "00-a" } },
    });
  });
});

describe("logs and audit events lead to their trace", () => {
  it("writes an audit log line with trace_id once, at the top level as on the request line, and keeps it for the sinks", async () => {
    const lines: string[] = [];
    const stored: AuditEvent[] = [];
    const observer = createObserver({
      logger: createLogger({ level: "info", destination: captureStream(lines) }),
      auditSinks: [
        { name: "memory", write: async (events) => void stored.push(...events), close: async () => {} },
      ],
    });
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
    t.run(() => observer.audit({ type: "denied", time: new Date().toISOString(), actor: "mcpg_Ab3dEf9h" }));
    t.end({ status: 403, decision: "tool_denied" });
    await observer.flush();

    const line = lines.find((l) => JSON.parse(l).msg === "audit")!;
    expect(line.match(/"trace_id"/g)).toHaveLength(1);
    const entry = JSON.parse(line);
    expect(entry.trace_id).toBe(t.traceId);
    expect(entry.audit).toEqual({ type: "denied", time: expect.any(String), actor: "mcpg_Ab3dEf9h" });
    // The file and the table's `trace_id` column still get it.
    expect(stored).toEqual([expect.objectContaining({ type: "denied", trace_id: t.traceId })]);
  });

  it("puts an event's own trace_id at the top level of its line outside a traced request", () => {
    const lines: string[] = [];
    const observer = createObserver({
      logger: createLogger({ level: "info", destination: captureStream(lines) }),
    });
    observer.audit({ type: "denied", time: new Date().toISOString(), trace_id: REMOTE_TRACE });
    const entry = JSON.parse(lines[0]!);
    expect(entry.trace_id).toBe(REMOTE_TRACE);
    expect(entry.audit).not.toHaveProperty("trace_id");
  });
});
