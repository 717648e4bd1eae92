import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveTracing } from "../../src/gateway/tracing-config.js";
import { startTracing } from "../../src/gateway/tracing-sdk.js";
import { createLogger } from "../../src/observe/logger.js";
import { startRequestSpan } from "../../src/observe/tracing.js";
import { traceVerifier } from "../../src/observe/tracing-wrappers.js";
import { captureStream } from "../helpers/gateway.js";
import { type OtlpReceiver, startOtlpReceiver } from "../helpers/otlp-receiver.js";

/** The gateway's SDK setup against a real OTLP/HTTP receiver (protobuf decoded with protobufjs). */

let otlp: OtlpReceiver;
beforeAll(async () => {
  otlp = await startOtlpReceiver();
});
afterAll(async () => {
  await otlp.close();
});

describe("the gateway's tracing SDK", () => {
  it("exports protobuf spans over OTLP/HTTP, parent links intact, and flushes on shutdown", async () => {
    const settings = resolveTracing(
      {
        enabled: true,
        serviceName: "gw-under-test",
        resourceAttributes: { "deployment.environment.name": "test" },
      },
      { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_BSP_SCHEDULE_DELAY: "60000" },
    );
    const tracing = await startTracing(settings);
    expect(tracing.url).toBe(`${otlp.url}/v1/traces`);
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
    await t.run(() =>
      traceVerifier({ kind: "static_key", verify: async (_t: string) => ({ ok: true }) }).verify(
        "secret-token-value",
      ),
    );
    t.describe({ mcpMethod: "tools/list" });
    t.end({ status: 200, decision: "allow" });
    // The batch delay is a minute: only the shutdown's flush can have sent them.
    expect(otlp.spans).toHaveLength(0);
    await tracing.shutdown();
    expect(otlp.contentTypes.every((c) => c === "application/x-protobuf")).toBe(true);
    const server = otlp.spans.find((s) => s.name === "tools/list");
    const auth = otlp.spans.find((s) => s.name === "mcpgate.authenticate");
    expect(server?.kind).toBe("SERVER");
    expect(server?.attributes["http.response.status_code"]).toBe(200);
    expect(server?.resource["service.name"]).toBe("gw-under-test");
    expect(server?.resource["deployment.environment.name"]).toBe("test");
    expect(server?.scope).toBe("mcpgate");
    expect(auth?.parentSpanId).toBe(server?.spanId);
    expect(auth?.traceId).toBe(server?.traceId);
    expect(auth?.attributes["mcpgate.auth.cache_hit"]).toBe(true);
    expect(otlp.allStrings().join("\n")).not.toContain("secret-token-value");
    // Shut down, the API is a no-op again.
    expect(startRequestSpan({ method: "GET", path: "/mcp", headers: {} }).traceId).toBeUndefined();
  });

  it("bounds attribute values that come from the request (a huge mcp-protocol-version header)", async () => {
    const tracing = await startTracing(
      resolveTracing({ enabled: true }, { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url }),
    );
    const t = startRequestSpan({ method: "POST", path: "/mcp", headers: {} });
    t.describe({ protocolVersion: "9".repeat(100_000), mcpMethod: "initialize" });
    t.end({ status: 400, decision: "invalid_request" });
    await tracing.shutdown();
    const span = otlp.spans.find((s) => s.attributes["mcp.protocol.version"] !== undefined);
    expect(String(span?.attributes["mcp.protocol.version"]).length).toBe(1024);
  });

  it("samples nothing with always_off, but still continues the incoming trace id", async () => {
    const before = otlp.spans.length;
    const tracing = await startTracing(
      resolveTracing({ enabled: true, sampler: "always_off" }, { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url }),
    );
    const t = startRequestSpan({
      method: "POST",
      path: "/mcp",
      headers: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
    });
    expect(t.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
    t.end({ status: 200, decision: "allow" });
    await tracing.shutdown();
    expect(otlp.spans.length).toBe(before);
  });

  it("does not hold up shutdown when the collector never answers", async () => {
    // A TCP server that accepts and never responds: the export hangs until the shutdown bound.
    const sockets: import("node:net").Socket[] = [];
    const silent = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as import("node:net").AddressInfo).port;
    const tracing = await startTracing(
      resolveTracing({ enabled: true, endpoint: `http://127.0.0.1:${port}` }, {}),
    );
    startRequestSpan({ method: "POST", path: "/mcp", headers: {} }).end({ status: 200, decision: "allow" });
    const started = Date.now();
    await tracing.shutdown(300);
    expect(Date.now() - started).toBeLessThan(5_000);
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  });

  it("logs a failed export at warn, without the export's headers", async () => {
    const refusing = createHttpServer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(400).end("bad request"));
    });
    await new Promise<void>((r) => refusing.listen(0, "127.0.0.1", r));
    const port = (refusing.address() as import("node:net").AddressInfo).port;
    const lines: string[] = [];
    const logger = createLogger({ level: "info", destination: captureStream(lines) });
    const tracing = await startTracing(
      resolveTracing(
        { enabled: true, endpoint: `http://127.0.0.1:${port}`, headers: { "x-key": "otlp-secret-123456" } },
        {},
      ),
      logger,
    );
    startRequestSpan({ method: "POST", path: "/mcp", headers: {} }).end({ status: 200, decision: "allow" });
    await tracing.flush();
    await tracing.shutdown();
    await new Promise((r) => refusing.close(r));
    const problems = lines.filter((l) => l.includes("tracing: export problem"));
    expect(problems.length).toBeGreaterThan(0);
    expect(lines.join("\n")).not.toContain("otlp-secret-123456");
  });

  it("is the no-op without settings: nothing loaded, nothing registered", async () => {
    const tracing = await startTracing(undefined);
    expect(tracing.url).toBeUndefined();
    expect(startRequestSpan({ method: "GET", path: "/mcp", headers: {} }).traceId).toBeUndefined();
    await tracing.shutdown();
  });
});
