import { mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateConfig } from "../../src/config.js";
import { isMcpGateError } from "../../src/core/errors.js";
import { startGateway } from "../../src/gateway/assembly/assemble.js";
import { findFreePort } from "../../src/gateway/free-port.js";
import { createLogger } from "../../src/observe/logger.js";
import { portOpen } from "../faults/spawn-gateway.js";
import { captureStream } from "../helpers/gateway.js";
import { childrenOf, TINY_SERVER } from "./stdio-helpers.js";

/**
 * The tracing SDK is registered after everything else is built and before the port opens. When it
 * cannot start (here: an OTLP endpoint variable that is no URL and carries a collector credential,
 * which the exporter's own error quoted whole), the gateway must close what it built — the stdio
 * upstream's spare child, the SQLite key store, the audit file, the metrics listener — and reject
 * with a clear error that holds no secret.
 */

const SECRET = "otel-collector-s3cret-0123456789";
const BAD_ENDPOINT = `http://otel-user:${SECRET}@[::1/v1/traces`;

/** This process's open file descriptors that point into `dir`. */
function openFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir)) out.push(target);
    } catch {
      // Closed while listing (the readdir's own descriptor).
    }
  }
  return out;
}

/** Handles of the kinds a gateway opens (servers, sockets, children and their pipes), once closes settle. */
async function gatewayHandles(): Promise<string[]> {
  await new Promise((r) => setTimeout(r, 20));
  const kinds = new Set(["TCPServerWrap", "TCPSocketWrap", "ProcessWrap", "PipeWrap"]);
  return process
    .getActiveResourcesInfo()
    .filter((k) => kinds.has(k))
    .sort();
}

describe("a gateway whose tracing cannot start", () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-tracing-fail-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("rejects with a clear error holding no secret, and leaves no port, child, file or handle open", async () => {
    const port = await findFreePort("127.0.0.1");
    const metricsPort = await findFreePort("127.0.0.1");
    const childrenBefore = childrenOf(process.pid).map((c) => c.pid);
    const handlesBefore = await gatewayHandles();
    const env = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: BAD_ENDPOINT };
    const config = validateConfig(
      {
        listen: { host: "127.0.0.1", port },
        upstream: { command: TINY_SERVER, killGrace: "1s" },
        auth: { apiKeys: { store: `sqlite:${join(dir, "keys.db")}` } },
        logging: { level: "debug", audit: join(dir, "audit.jsonl") },
        metrics: { listen: `127.0.0.1:${metricsPort}` },
      },
      env,
    );
    const logs: string[] = [];
    const logger = createLogger({ level: "debug", destination: captureStream(logs) });
    const err = await startGateway({ config, env, logger }).then(
      async (gw) => {
        await gw.close();
        return expect.fail("the gateway started with an OTLP endpoint that cannot be parsed");
      },
      (e: unknown) => e,
    );
    if (!(err instanceof Error)) return expect.fail(`rejected with a non-Error: ${String(err)}`);

    // Clear: a configuration error that names the setting, never the URL or its credential.
    expect(isMcpGateError(err, "ERR_CONFIG_INVALID")).toBe(true);
    expect(err.message).toMatch(/tracing/i);
    expect(err.message).toContain("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    const told = `${err.message}\n${err.stack}\n${String((err as { cause?: unknown }).cause ?? "")}`;
    expect(told).not.toContain(SECRET);
    expect(told).not.toContain("otel-user");

    // Nothing left open: the spare child was started, then ended with the rest.
    expect(logs.join("\n")).toContain("stdio upstream exited");
    expect(childrenOf(process.pid).map((c) => c.pid)).toEqual(childrenBefore);
    expect(await gatewayHandles()).toEqual(handlesBefore);
    expect(openFilesUnder(dir)).toEqual([]);
    expect(await portOpen(port)).toBe(false);
    expect(await portOpen(metricsPort)).toBe(false);
    expect(logs.join("\n")).not.toContain(SECRET);
  });
});

describe("a gateway whose shared state cannot be reached at start", () => {
  it("rejects, and closes what it built before: the metrics listener, the audit file, the key store", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mcpgate-state-fail-"));
    try {
      const port = await findFreePort("127.0.0.1");
      const metricsPort = await findFreePort("127.0.0.1");
      // A port nothing listens on: Redis is unreachable.
      const redisPort = await findFreePort("127.0.0.1");
      const handlesBefore = await gatewayHandles();
      const config = validateConfig(
        {
          listen: { host: "127.0.0.1", port },
          upstream: { url: "http://127.0.0.1:9/mcp" },
          auth: { apiKeys: { store: `sqlite:${join(dir, "keys.db")}` } },
          logging: { level: "info", audit: join(dir, "audit.jsonl") },
          metrics: { listen: `127.0.0.1:${metricsPort}` },
          state: { redis: `redis://127.0.0.1:${redisPort}` },
        },
        {},
      );
      const logs: string[] = [];
      const logger = createLogger({ level: "info", destination: captureStream(logs) });
      const started = await startGateway({ config, env: {}, logger }).then(
        async (gw) => {
          await gw.close();
          return "started";
        },
        () => "refused",
      );
      expect(started).toBe("refused");
      expect(await portOpen(metricsPort)).toBe(false);
      expect(await portOpen(port)).toBe(false);
      expect(openFilesUnder(dir)).toEqual([]);
      expect(await gatewayHandles()).toEqual(handlesBefore);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
