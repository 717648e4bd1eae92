import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import { mcpAuth } from "../../src/http/express.js";
import { connectClient, INIT, rawPost } from "../helpers/client.js";

/**
 * The library (`mcpgate/express`) in an app that registers the official SDK itself, with the
 * in-memory exporter: mcpgate's spans join the app's traces, and the app's tool handler runs
 * inside mcpgate's request span.
 */

const KEY = `trace-lib-${randomBytes(16).toString("hex")}`;
const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });

describe("mcpgate/express traced by the application's SDK", () => {
  let server: Server;
  let url: string;

  beforeAll(async () => {
    trace.setGlobalTracerProvider(provider);
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    const app = express();
    app.use(express.json());
    app.use(
      "/mcp",
      mcpAuth({ verifiers: [createStaticKeyVerifier({ key: KEY })], publicUrl: "http://127.0.0.1/mcp" }),
    );
    app.post("/mcp", async (req, res) => {
      const mcp = new McpServer({ name: "traced-app", version: "1.0.0" });
      mcp.registerTool("work", { description: "does some traced work" }, async () => {
        const span = trace.getTracer("app").startSpan("app.work");
        span.end();
        return { content: [{ type: "text" as const, text: "done" }] };
      });
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: true,
      });
      res.on("close", () => void transport.close());
      await mcp.connect(transport);
      await transport.handleRequest(req, res, req.body);
    });
    await new Promise<void>((resolve) => {
      server = app.listen(0, "127.0.0.1", () => resolve());
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => server?.close(() => r()));
    await provider.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it("continues the caller's traceparent; authentication is a child; the tool handler runs inside the request span", async () => {
    exporter.reset();
    const traceId = randomBytes(16).toString("hex");
    const parent = randomBytes(8).toString("hex");
    const res = await rawPost(
      url,
      { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "work", arguments: {} } },
      {
        authorization: `Bearer ${KEY}`,
        traceparent: `00-${traceId}-${parent}-01`,
        "mcp-protocol-version": "2025-06-18",
      },
    );
    expect(res.status).toBe(200);
    const spans = exporter.getFinishedSpans();
    const request = spans.find((s) => s.name === "tools/call work");
    expect(request?.kind).toBe(SpanKind.SERVER);
    expect(request?.spanContext().traceId).toBe(traceId);
    expect(request?.parentSpanContext?.spanId).toBe(parent);
    expect(request?.attributes).toMatchObject({
      "mcp.method.name": "tools/call",
      "gen_ai.tool.name": "work",
      "mcpgate.decision": "allow",
      "http.response.status_code": 200,
    });
    const auth = spans.find((s) => s.name === "mcpgate.authenticate");
    expect(auth?.parentSpanContext?.spanId).toBe(request?.spanContext().spanId);
    const work = spans.find((s) => s.name === "app.work");
    expect(work?.spanContext().traceId).toBe(traceId);
    expect(work?.parentSpanContext?.spanId).toBe(request?.spanContext().spanId);
    expect(JSON.stringify(spans.map((s) => s.attributes))).not.toContain(KEY);
  });

  it("a refused request is an error span with its status code, and the app never runs", async () => {
    exporter.reset();
    const res = await rawPost(url, INIT, { authorization: "Bearer not-the-key" });
    expect(res.status).toBe(401);
    const spans = exporter.getFinishedSpans();
    const request = spans.find((s) => s.kind === SpanKind.SERVER);
    expect(request?.status).toEqual({ code: SpanStatusCode.ERROR, message: "401" });
    expect(request?.attributes["http.response.status_code"]).toBe(401);
    expect(spans.some((s) => s.name === "app.work")).toBe(false);
  });

  it("works with the SDK client end to end", async () => {
    exporter.reset();
    const { client } = await connectClient(url, KEY);
    const out = await client.callTool({ name: "work", arguments: {} });
    expect(out.content).toEqual([{ type: "text", text: "done" }]);
    await client.close();
    const names = exporter.getFinishedSpans().map((s) => s.name);
    expect(names).toContain("initialize");
    expect(names).toContain("tools/call work");
  });
});
