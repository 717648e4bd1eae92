import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateConfig } from "../../src/config.js";
import { type RunningGateway, startGateway } from "../../src/gateway/assembly/assemble.js";
import { findFreePort } from "../../src/gateway/free-port.js";
import type { StdioUpstream } from "../../src/gateway/stdio/stdio-upstream.js";
import { createLogger } from "../../src/observe/logger.js";
import {
  connectClient,
  EVERYTHING_SERVER,
  isAlive,
  rawPost,
  TINY_SERVER,
  waitFor,
} from "../gateway/stdio-helpers.js";

const KEY = `e2e-stdio-${Math.random().toString(36).slice(2)}-static-key`;

function textOf(result: unknown): string {
  return ((result as { content: Array<{ text: string }> }).content[0] ?? { text: "" }).text;
}

async function start(raw: Record<string, unknown>, lines: string[]): Promise<RunningGateway> {
  const config = validateConfig(
    { listen: { host: "127.0.0.1", port: 0 }, logging: { level: "debug" }, ...raw },
    {},
  );
  const logger = createLogger({ level: "debug", destination: { write: (l: string) => void lines.push(l) } });
  // The gateway's own environment holds secrets: none of them may reach the child.
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    MCP_API_KEY: KEY,
    MCPGATE_KEY_PEPPER: "pepper-that-must-not-leak",
    UPSTREAM_TOKEN: "token-that-must-not-leak",
  };
  return startGateway({ config, env, logger });
}

describe("mcpgate serve --stdio with @modelcontextprotocol/server-everything and the SDK client", () => {
  let gw: RunningGateway;
  const lines: string[] = [];

  beforeAll(async () => {
    gw = await start(
      {
        upstream: { command: EVERYTHING_SERVER, env: { EVERYTHING_MODE: "e2e" } },
        auth: { staticKey: { env: "MCP_API_KEY", scopes: ["tools:call"] } },
        policy: {
          default: "deny",
          tools: [
            { match: "get-tiny-image", scopes: ["admin"] },
            { match: "*", scopes: ["tools:call"] },
          ],
          resources: [{ match: "*", scopes: [] }],
          prompts: [{ match: "*", scopes: [] }],
        },
      },
      lines,
    );
  }, 30_000);

  afterAll(async () => {
    await gw?.close();
  });

  it("initializes, lists and calls tools, streams progress, and DELETE ends the child", async () => {
    const { client, transport } = await connectClient(gw.url, KEY);
    expect(client.getServerVersion()?.name).toMatch(/everything/);
    const upstream = gw.upstream as StdioUpstream;
    const pid = upstream.sessionPid(transport.sessionId!)!;
    expect(isAlive(pid)).toBe(true);

    const names = (await client.listTools()).tools.map((t) => t.name);
    expect(names).toContain("echo");
    expect(names).toContain("get-env");
    // Policy filtering applies to the stdio child's list exactly as to an HTTP upstream's.
    expect(names).not.toContain("get-tiny-image");
    const denied = await client.callTool({ name: "get-tiny-image", arguments: {} });
    expect(denied.isError).toBe(true);

    expect(textOf(await client.callTool({ name: "echo", arguments: { message: "hi there" } }))).toBe(
      "Echo: hi there",
    );
    const progress: number[] = [];
    const long = await client.callTool(
      { name: "trigger-long-running-operation", arguments: { duration: 0.3, steps: 3 } },
      undefined,
      { onprogress: (p) => progress.push(p.progress) },
    );
    expect(textOf(long)).toMatch(/completed/);
    expect(progress).toEqual([1, 2, 3]);

    const env = JSON.parse(textOf(await client.callTool({ name: "get-env", arguments: {} }))) as Record<
      string,
      string
    >;
    expect(env.EVERYTHING_MODE).toBe("e2e");
    expect(env.PATH).toBe(process.env.PATH);
    expect(env.MCP_API_KEY).toBeUndefined();
    expect(env.MCPGATE_KEY_PEPPER).toBeUndefined();
    expect(env.UPSTREAM_TOKEN).toBeUndefined();
    expect(JSON.stringify(env)).not.toContain(KEY);

    await transport.terminateSession();
    expect(isAlive(pid)).toBe(false);
    await client.close();
  }, 30_000);

  it("relays a server→client request (sampling) and the client's answer back to the child", async () => {
    const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
    const { StreamableHTTPClientTransport } = await import(
      "@modelcontextprotocol/sdk/client/streamableHttp.js"
    );
    const { CreateMessageRequestSchema } = await import("@modelcontextprotocol/sdk/types.js");
    const client = new Client({ name: "sampler", version: "1.0.0" }, { capabilities: { sampling: {} } });
    const asked: string[] = [];
    client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
      const first = req.params.messages[0]?.content;
      asked.push(first && "text" in first ? String(first.text) : "");
      return {
        model: "test-model",
        role: "assistant",
        content: { type: "text", text: "sampled by the client" },
      };
    });
    const transport = new StreamableHTTPClientTransport(new URL(gw.url), {
      requestInit: { headers: { Authorization: `Bearer ${KEY}` } },
    });
    await client.connect(transport);
    const result = await client.callTool({
      name: "trigger-sampling-request",
      arguments: { prompt: "hello sampler", maxTokens: 20 },
    });
    expect(asked).toHaveLength(1);
    expect(asked[0]).toContain("hello sampler");
    expect(textOf(result)).toContain("sampled by the client");
    await transport.terminateSession();
    await client.close();
  }, 30_000);

  it("refuses a request without the key with 401 before any process starts", async () => {
    const before = (gw.upstream as StdioUpstream).childPids().length;
    const res = await rawPost(gw.url, "wrong-key-wrong-key-wrong", {
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "x", version: "1" } },
    });
    expect(res.status).toBe(401);
    expect((gw.upstream as StdioUpstream).childPids().length).toBe(before);
  });
});

describe("mcpgate serve --stdio: rate limits and session binding from the configuration", () => {
  let gw: RunningGateway;
  const lines: string[] = [];

  beforeAll(async () => {
    gw = await start(
      {
        upstream: { command: TINY_SERVER, maxChildren: 4 },
        rateLimit: { perPrincipal: { limit: 6, window: "1m" } },
      },
      lines,
    );
  });

  it("answers 429 once the caller's budget is spent, without reaching the child", async () => {
    const { client, transport } = await connectClient(gw.url, KEY);
    let limited: unknown;
    for (let i = 0; i < 10 && !limited; i++) {
      try {
        await client.callTool({ name: "pid", arguments: {} });
      } catch (err) {
        limited = err;
      }
    }
    expect(String(limited)).toMatch(/429|Too Many Requests/);
    // The DELETE is over budget too: it is refused before the upstream, so the child lives on
    // until its idle timeout or shutdown.
    await transport.terminateSession().catch(() => {});
    await client.close();
    const upstream = gw.upstream as StdioUpstream;
    expect(upstream.sessionCount()).toBe(1);
    const pids = upstream.childPids();
    expect(pids.length).toBeGreaterThan(0);
    await gw.close();
    expect(await waitFor(() => pids.every((pid) => !isAlive(pid)))).toBe(true);
  });
});

describe("mcpgate serve --stdio (the CLI process)", () => {
  it("serves a stdio server with auth and ends its children on SIGTERM", async () => {
    const port = await findFreePort("127.0.0.1");
    const cmd = `${TINY_SERVER[0]} ${TINY_SERVER[1]}`;
    const proc = spawn(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "serve", "--stdio", cmd, "--port", String(port)],
      {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, MCP_API_KEY: KEY, MCPGATE_LOG_LEVEL: "warn" },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    try {
      const url = `http://127.0.0.1:${port}/mcp`;
      let connected: Awaited<ReturnType<typeof connectClient>> | undefined;
      const deadline = Date.now() + 20_000;
      while (!connected && Date.now() < deadline) {
        connected = await connectClient(url, KEY).catch(async () => {
          await new Promise((r) => setTimeout(r, 200));
          return undefined;
        });
      }
      expect(connected).toBeDefined();
      const pid = Number(textOf(await connected!.client.callTool({ name: "pid", arguments: {} })));
      expect(isAlive(pid)).toBe(true);
      const unauth = await rawPost(url, "not-the-key-not-the-key", { jsonrpc: "2.0", id: 1, method: "ping" });
      expect(unauth.status).toBe(401);
      proc.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(await waitFor(() => !isAlive(pid))).toBe(true);
      await connected!.client.close().catch(() => {});
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }
  }, 40_000);
});
