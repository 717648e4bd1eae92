import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnGateway } from "../faults/spawn-gateway.js";
import { INIT, rawPost } from "../helpers/client.js";
import { type OtlpReceiver, startOtlpReceiver } from "../helpers/otlp-receiver.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * `mcpgate serve` as an operator runs it, traced by the standard variables alone (no `tracing:`
 * section): OTEL_EXPORTER_OTLP_ENDPOINT + OTEL_SERVICE_NAME turn export on, and SIGTERM flushes
 * what is buffered before the process exits (the batch delay here is longer than the test).
 */

const KEY = `trace-cli-${randomBytes(16).toString("hex")}`;

describe("mcpgate serve with OTEL_* variables only", () => {
  let otlp: OtlpReceiver;
  let upstream: RecordingUpstream;

  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    upstream = await startRecordingUpstream();
  });
  afterAll(async () => {
    await upstream?.close();
    await otlp?.close();
  });

  it("exports the request's spans over OTLP/HTTP and flushes them on SIGTERM", async () => {
    const gw = await spawnGateway(
      { upstream: { url: upstream.url } },
      {
        MCP_API_KEY: KEY,
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_SERVICE_NAME: "mcpgate-cli-test",
        OTEL_BSP_SCHEDULE_DELAY: "600000",
      },
    );
    try {
      const traceId = randomBytes(16).toString("hex");
      const res = await rawPost(gw.url, INIT, {
        authorization: `Bearer ${KEY}`,
        traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01`,
      });
      expect(res.status).toBe(200);
      // Buffered for ten minutes: nothing has been exported yet.
      await new Promise((r) => setTimeout(r, 300));
      expect(otlp.spans.some((s) => s.traceId === traceId)).toBe(false);
      gw.child.kill("SIGTERM");
      expect(await gw.exited, gw.output()).toBe(0);
      const server = otlp.spans.find((s) => s.traceId === traceId && s.kind === "SERVER");
      expect(server?.name, `${otlp.spans.length} spans received; gateway output:\n${gw.output()}`).toBe(
        "initialize",
      );
      expect(server?.resource["service.name"]).toBe("mcpgate-cli-test");
      expect(otlp.spans.some((s) => s.traceId === traceId && s.kind === "CLIENT")).toBe(true);
      expect(gw.output()).toContain("tracing on (OTLP/HTTP)");
      expect(gw.output()).not.toContain(KEY);
    } finally {
      await gw.stop();
    }
  });

  it("loads no tracing SDK and exports nothing without a tracing section or OTEL_* variables", async () => {
    const before = otlp.spans.length;
    const gw = await spawnGateway({ upstream: { url: upstream.url } }, { MCP_API_KEY: KEY });
    try {
      const res = await rawPost(gw.url, INIT, {
        authorization: `Bearer ${KEY}`,
        traceparent: `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`,
      });
      expect(res.status).toBe(200);
      // Without tracing nothing is propagated either: the upstream sees no traceparent from us.
      const seen = upstream.seen.filter((r) => r.body.includes('"initialize"')).at(-1);
      expect(seen?.headers.traceparent).toBeUndefined();
      gw.child.kill("SIGTERM");
      await gw.exited;
      expect(gw.output()).not.toContain("tracing on");
      expect(otlp.spans.length).toBe(before);
    } finally {
      await gw.stop();
    }
  });
});

describe("mcpgate config check with a tracing section", () => {
  it("validates it and never prints an export header's value with --json", () => {
    const dir = mkdtempSync(join(tmpdir(), "mcpgate-trace-check-"));
    try {
      const file = join(dir, "gw.yaml");
      writeFileSync(
        file,
        [
          "upstream: { url: http://127.0.0.1:3000/mcp }",
          "tracing:",
          "  endpoint: http://127.0.0.1:4318",
          "  sampleRatio: 0.25",
          '  headers: { x-honeycomb-team: "${OTLP_KEY}" }',
          "",
        ].join("\n"),
      );
      const r = spawnSync(
        process.execPath,
        [
          "--import",
          "tsx",
          join(import.meta.dirname, "../../src/cli/main.ts"),
          "config",
          "check",
          "--json",
          file,
        ],
        {
          encoding: "utf8",
          env: { ...process.env, OTLP_KEY: "otlp-export-key-0123456789" },
          timeout: 50_000,
        },
      );
      expect(r.status, r.stderr).toBe(0);
      const printed = JSON.parse(r.stdout) as { tracing: Record<string, unknown> };
      expect(printed.tracing).toMatchObject({
        endpoint: "http://127.0.0.1:4318",
        sampleRatio: 0.25,
        enabled: true,
      });
      expect(printed.tracing.headers).toEqual({ "x-honeycomb-team": "[redacted]" });
      expect(r.stdout).not.toContain("otlp-export-key-0123456789");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
