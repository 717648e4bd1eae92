import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import { mcpAuth } from "../../src/http/express.js";
import { createLogger } from "../../src/observe/logger.js";
import { createMetrics, type GateMetrics } from "../../src/observe/metrics.js";
import { createObserver } from "../../src/observe/observer.js";
import { connectClient, rawPost } from "../helpers/client.js";
import { captureStream, startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";
import { parsePrometheusText, type Sample } from "../observe/prom-text.js";

/**
 * Issue 13 item 7: library users get what the gateway has — the same metrics, request logs and
 * 401-spike detection — from one observer on the gate. The same traffic through an Express app and
 * through the gateway yields the same mcpgate_* series.
 */
const KEY = "express-metrics-test-key-0123456789";

/** The mcpgate_* samples that count requests, tool calls and auth failures (label sets, values). */
function traffic(samples: Sample[]): string[] {
  return samples
    .filter((s) =>
      ["mcpgate_requests_total", "mcpgate_tool_calls_total", "mcpgate_auth_failures_total"].includes(s.name),
    )
    .map((s) => `${s.name}${JSON.stringify(s.labels)} ${s.value}`)
    .sort();
}

/** The same traffic: an SDK client session with one tool call, and one request without a credential. */
async function drive(url: string): Promise<void> {
  const { client } = await connectClient(url, KEY);
  await client.callTool({ name: "echo", arguments: { text: "hi" } });
  await client.close();
  await rawPost(url, { jsonrpc: "2.0", id: 1, method: "ping" });
}

describe("library parity: Express exposes the same metrics as the gateway", () => {
  let server: Server;
  let url: string;
  let metrics: GateMetrics;
  const logs: string[] = [];
  let upstream: RecordingUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    metrics = createMetrics({ defaultMetrics: false });
    const observer = createObserver({
      metrics,
      logger: createLogger({ level: "info", destination: captureStream(logs) }),
    });
    const app = express();
    app.use(express.json());
    app.use(
      "/mcp",
      mcpAuth({
        verifiers: [createStaticKeyVerifier({ key: KEY })],
        publicUrl: "http://127.0.0.1/mcp",
        observer,
      }),
    );
    app.all("/mcp", async (req, res) => {
      const mcp = new McpServer({ name: "express-metrics", version: "1.0.0" });
      mcp.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => ({
        content: [{ type: "text" as const, text }],
      }));
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
    upstream = await startRecordingUpstream({ stateless: true, jsonResponse: true });
    gw = await startTestGateway(
      { upstream: { url: upstream.url }, metrics: { listen: "127.0.0.1:0" } },
      { MCP_API_KEY: KEY },
    );
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await gw?.close();
    await upstream?.close();
  });

  it("counts requests, tool calls and 401s for the Express app as the gateway does for the same traffic", async () => {
    await drive(url);
    await drive(gw.url);
    const lib = traffic(parsePrometheusText(await metrics.text()));
    const gateway = traffic(
      parsePrometheusText(await (await fetch(gw.observability.metricsServer!.url)).text()),
    );
    expect(lib.length).toBeGreaterThan(3);
    expect(
      lib.some((l) => l.startsWith('mcpgate_tool_calls_total{"tool":"echo","decision":"allow"} 1')),
    ).toBe(true);
    expect(lib.some((l) => l.startsWith("mcpgate_auth_failures_total"))).toBe(true);
    expect(lib).toEqual(gateway);
  });

  it("writes one request log line per request, with the principal's display name and never the key", () => {
    const lines = logs.filter((l) => l.includes('"msg":"request"'));
    expect(lines.length).toBeGreaterThanOrEqual(4);
    expect(lines.some((l) => l.includes('"status":401'))).toBe(true);
    expect(logs.join("\n")).not.toContain(KEY);
  });
});
