import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findFreePort } from "../../src/gateway/free-port.js";
import { connectClient } from "../helpers/client.js";
import { startRecordingUpstream } from "../helpers/upstream.js";

const CLI = ["--import", "tsx", "src/cli/main.ts"];
const KEY = "cli-serve-test-key-0123456789abcdef";
const dir = mkdtempSync(join(tmpdir(), "mcpgate-cli-"));

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [...CLI, ...args], {
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: 50_000,
  });
}

describe("mcpgate config check", () => {
  it("accepts a valid file (exit 0)", () => {
    const f = join(dir, "ok.yaml");
    writeFileSync(f, "upstream:\n  url: http://127.0.0.1:3000/mcp\n");
    const r = run(["config", "check", f]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("ok");
  });

  it("rejects an invalid file with a one-line message naming the field (exit 2, no stack)", () => {
    const f = join(dir, "bad.yaml");
    writeFileSync(f, "listen:\n  port: -1\n");
    const r = run(["config", "check", f]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/listen\.port/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("never prints a secret header value with --json", () => {
    const f = join(dir, "secret.yaml");
    writeFileSync(
      f,
      'upstream:\n  url: http://127.0.0.1:3000/mcp\n  headers: { Authorization: "Bearer ${UP_SECRET}" }\n',
    );
    const r = run(["config", "check", "--json", f], { UP_SECRET: "very-secret-upstream-token" });
    expect(r.status).toBe(0);
    expect(r.stdout).not.toContain("very-secret-upstream-token");
  });

  it("never prints a credential written in a URL with --json (userinfo, query values)", () => {
    const f = join(dir, "url-secrets.yaml");
    writeFileSync(
      f,
      [
        "upstream:",
        '  url: "http://127.0.0.1:3000/mcp?key=${UP_KEY}"',
        'state: { redis: "redis://:${REDIS_PW}@127.0.0.1:6379" }',
        'tracing: { endpoint: "https://tenant:${COLLECTOR_PW}@collector.example/otlp?api_key=${COLLECTOR_KEY}" }',
        "",
      ].join("\n"),
    );
    const secrets = {
      UP_KEY: "up-key-s3cret-000",
      REDIS_PW: "redis-s3cret-333",
      COLLECTOR_PW: "pw-s3cret-111",
      COLLECTOR_KEY: "key-s3cret-222",
    };
    const r = run(["config", "check", "--json", f], secrets);
    expect(r.status).toBe(0);
    for (const s of Object.values(secrets)) expect(r.stdout).not.toContain(s);
    // What is not secret stays readable.
    expect(r.stdout).toContain("collector.example/otlp");
    expect(r.stdout).toContain("127.0.0.1:6379");
  });

  it("checks the OTEL_* endpoint variables as serve resolves them, never printing the URL (exit 2)", () => {
    const f = join(dir, "ok-otel.yaml");
    writeFileSync(f, "upstream:\n  url: http://127.0.0.1:3000/mcp\n");
    const secret = "collector-s3cret-0123456789";
    const r = run(["config", "check", f], {
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://u:${secret}@[::1/v1/traces`,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    expect(r.stderr).not.toContain(secret);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // A variable serve would ignore is said too, as a warning.
    const warned = run(["config", "check", f], {
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318",
      OTEL_TRACES_SAMPLER: "sometimes",
    });
    expect(warned.status).toBe(0);
    expect(warned.stderr).toContain('warning: tracing: OTEL_TRACES_SAMPLER="sometimes" is not supported');
    // Every endpoint variable set is checked, not only the one used (the exporter reads them all).
    const both = run(["config", "check", f], {
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://127.0.0.1:4318/v1/traces",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://u:${secret}@[::1`,
    });
    expect(both.status).toBe(2);
    expect(both.stderr).not.toContain(secret);
  });
});

describe("mcpgate serve", () => {
  it("exits 2 on bad flags and on a missing upstream", () => {
    expect(run(["serve", "--bogus"]).status).toBe(2);
    const r = run(["serve"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/no upstream/);
  });

  it("exits 2 with a one-line message when the port is taken", async () => {
    const { createServer } = await import("node:net");
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = run(["serve", "--upstream", "http://127.0.0.1:1/mcp", "--port", String(port)], {
        MCP_API_KEY: KEY,
      });
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${port}: address already in use`);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      blocker.close();
    }
  });

  it("serves an SDK client through the gateway and exits 0 on SIGTERM", async () => {
    const upstream = await startRecordingUpstream();
    const port = await findFreePort("127.0.0.1");
    const child = spawn(
      process.execPath,
      [...CLI, "serve", "--upstream", upstream.url, "--port", String(port)],
      {
        env: { ...process.env, MCP_API_KEY: KEY },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    try {
      const url = `http://127.0.0.1:${port}/mcp`;
      for (let i = 0; i < 400 && !out.includes("mcpgate listening"); i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(out).toContain("mcpgate listening");
      const { client } = await connectClient(url, KEY);
      const r = await client.callTool({ name: "echo", arguments: { message: "hi" } });
      expect(r.content).toEqual([{ type: "text", text: "hi" }]);
      await client.close();
      const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      expect(await exit).toBe(0);
      // Log lines are written in batches: the shutdown flushes them, none is lost.
      expect(out).toContain('"msg":"request"');
      expect(out).toContain("SIGTERM received");
      expect(out).not.toContain(KEY);
    } finally {
      child.kill("SIGKILL");
      await upstream.close();
    }
  }, 60_000);
});
