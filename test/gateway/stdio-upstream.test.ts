import { afterEach, describe, expect, it } from "vitest";
import { buildChildEnv } from "../../src/gateway/stdio/child-process.js";
import {
  bobCannotSeeAdmin,
  childrenOf,
  connectClient,
  DEMO_SERVER,
  isAlive,
  KEYS,
  rawPost,
  startStdioGateway,
  type TestGateway,
  waitFor,
} from "./stdio-helpers.js";

const INIT = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
};

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

/** A 2026-era stateless `sleep` call (the pool serves it) by the caller holding `key`. */
const sleep2026 = (g: TestGateway, id: number, key: string, ms: number) =>
  rawPost(
    g.url,
    key,
    {
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: {
        name: "sleep",
        arguments: { ms },
        _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28" },
      },
    },
    {
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/call",
      "mcp-name": "sleep",
      accept: "application/json",
    },
  );

function textOf(result: unknown): string {
  return ((result as { content: Array<{ text: string }> }).content[0] ?? { text: "" }).text;
}

describe("stdio upstream: sessions and processes", () => {
  it("runs the bundled demo server per session: initialize, tools/list, tools/call and streamed progress", async () => {
    gw = await startStdioGateway({ command: DEMO_SERVER });
    const { client, transport } = await connectClient(gw.url, KEYS.alice);
    expect(transport.sessionId).toMatch(/^[\x21-\x7e]+$/);
    expect(client.getServerVersion()?.name).toBe("mcpgate-demo");
    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name).sort()).toEqual(["add", "count", "delete_note", "echo"]);
    const sum = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
    expect(textOf(sum)).toBe("5");
    const progress: number[] = [];
    const counted = await client.callTool({ name: "count", arguments: { n: 3 } }, undefined, {
      onprogress: (p) => progress.push(p.progress),
    });
    expect(textOf(counted)).toBe("counted to 3");
    expect(progress).toEqual([1, 2, 3]);
    const pid = gw.upstream.sessionPid(transport.sessionId!)!;
    expect(isAlive(pid)).toBe(true);
    await transport.terminateSession();
    expect(isAlive(pid)).toBe(false);
    expect(gw.upstream.childPids()).toEqual([]);
    await client.close();
  }, 30_000);

  it("gives two callers two different processes", async () => {
    gw = await startStdioGateway();
    const a = await connectClient(gw.url, KEYS.alice);
    const b = await connectClient(gw.url, KEYS.bob);
    const pidA = textOf(await a.client.callTool({ name: "pid", arguments: {} }));
    const pidB = textOf(await b.client.callTool({ name: "pid", arguments: {} }));
    expect(pidA).not.toBe(pidB);
    expect(gw.upstream.sessionPid(a.transport.sessionId!)).toBe(Number(pidA));
    expect(gw.upstream.sessionPid(b.transport.sessionId!)).toBe(Number(pidB));
    expect(gw.upstream.childPids().sort()).toEqual([Number(pidA), Number(pidB)].sort());
    await a.client.close();
    await b.client.close();
  });

  it("answers another principal's session id with 404 and keeps the owner's session", async () => {
    gw = await startStdioGateway();
    const a = await connectClient(gw.url, KEYS.alice);
    const res = await rawPost(
      gw.url,
      KEYS.bob,
      { jsonrpc: "2.0", id: 9, method: "tools/call", params: { name: "pid", arguments: {} } },
      { "mcp-session-id": a.transport.sessionId!, "mcp-protocol-version": "2025-06-18" },
    );
    expect(res.status).toBe(404);
    expect(textOf(await a.client.callTool({ name: "pid", arguments: {} }))).toMatch(/^\d+$/);
    await a.client.close();
  });

  it("opens and closes 100 sessions and leaves no child and no zombie behind", async () => {
    gw = await startStdioGateway();
    const seen = new Set<number>();
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          const { client, transport } = await connectClient(gw!.url, KEYS.alice);
          seen.add(gw!.upstream.sessionPid(transport.sessionId!)!);
          await transport.terminateSession();
          await client.close();
        }),
      );
    }
    expect(seen.size).toBe(100);
    expect(gw.upstream.childPids()).toEqual([]);
    expect(await waitFor(() => [...seen].every((pid) => !isAlive(pid)))).toBe(true);
    const mine = childrenOf(process.pid).filter((c) => seen.has(c.pid));
    expect(mine).toEqual([]);
    expect(childrenOf(process.pid).filter((c) => c.state === "Z")).toEqual([]);
  }, 60_000);

  it("answers a request in flight with an error when its child is killed, then 404 on that session", async () => {
    gw = await startStdioGateway();
    const { client, transport } = await connectClient(gw.url, KEYS.alice);
    const pid = gw.upstream.sessionPid(transport.sessionId!)!;
    const started = Date.now();
    const call = client.callTool({ name: "sleep", arguments: { ms: 20_000 } });
    setTimeout(() => process.kill(pid, "SIGKILL"), 200);
    await expect(call).rejects.toThrow(/-31004.*upstream MCP server unavailable/);
    expect(Date.now() - started).toBeLessThan(5_000);
    const res = await rawPost(
      gw.url,
      KEYS.alice,
      { jsonrpc: "2.0", id: 2, method: "tools/list" },
      { "mcp-session-id": transport.sessionId!, "mcp-protocol-version": "2025-06-18" },
    );
    expect(res.status).toBe(404);
    expect(gw.logLines.some((l) => l.includes("stdio upstream exited") && l.includes("SIGKILL"))).toBe(true);
    await client.close().catch(() => {});
  });

  it("ends a session's child after the idle timeout", async () => {
    gw = await startStdioGateway({ idleTtlMs: 300 });
    const { client, transport } = await connectClient(gw.url, KEYS.alice);
    const pid = gw.upstream.sessionPid(transport.sessionId!)!;
    expect(await waitFor(() => !isAlive(pid), 3_000)).toBe(true);
    expect(gw.upstream.sessionCount()).toBe(0);
    await client.close().catch(() => {});
  });

  it("refuses a new session with 503 when maxChildren children are running", async () => {
    gw = await startStdioGateway({ maxChildren: 1 });
    const a = await connectClient(gw.url, KEYS.alice);
    const res = await rawPost(gw.url, KEYS.bob, INIT);
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    await a.transport.terminateSession();
    const again = await rawPost(gw.url, KEYS.bob, INIT);
    expect(again.status).toBe(200);
    expect(again.headers.get("mcp-session-id")).toBeTruthy();
    await again.body?.cancel();
    await a.client.close();
  });

  it("keeps a fresh spare child booted and hands it to the next session, never to two", async () => {
    gw = await startStdioGateway({ spareChildren: 1 });
    expect(await waitFor(() => gw!.upstream.sparePids().length === 1)).toBe(true);
    const spare = gw.upstream.sparePids()[0]!;
    const a = await connectClient(gw.url, KEYS.alice);
    expect(gw.upstream.sessionPid(a.transport.sessionId!)).toBe(spare);
    expect(await waitFor(() => gw!.upstream.sparePids().length === 1)).toBe(true);
    const next = gw.upstream.sparePids()[0]!;
    expect(next).not.toBe(spare);
    const b = await connectClient(gw.url, KEYS.bob);
    expect(gw.upstream.sessionPid(b.transport.sessionId!)).toBe(next);
    expect(textOf(await b.client.callTool({ name: "pid", arguments: {} }))).toBe(String(next));
    await a.client.close();
    await b.client.close();
  });

  it("lets a session take the spare's slot when maxChildren is reached", async () => {
    gw = await startStdioGateway({ spareChildren: 1, maxChildren: 1 });
    expect(await waitFor(() => gw!.upstream.sparePids().length === 1)).toBe(true);
    const a = await connectClient(gw.url, KEYS.alice);
    expect(gw.upstream.childPids()).toHaveLength(1);
    expect(gw.upstream.sparePids()).toEqual([]);
    await a.transport.terminateSession();
    expect(await waitFor(() => gw!.upstream.sparePids().length === 1)).toBe(true);
    await a.client.close();
  });

  it("ends every child on gateway shutdown", async () => {
    const local = await startStdioGateway();
    const a = await connectClient(local.url, KEYS.alice);
    const b = await connectClient(local.url, KEYS.bob);
    const pids = local.upstream.childPids();
    expect(pids).toHaveLength(2);
    await local.close();
    expect(pids.every((p) => !isAlive(p))).toBe(true);
    await a.client.close().catch(() => {});
    await b.client.close().catch(() => {});
  });
});

describe("stdio upstream: children that fail", () => {
  it("answers 504 when the child never answers initialize, and ends it", async () => {
    gw = await startStdioGateway({
      command: [process.execPath, "-e", "setInterval(() => {}, 1000)"],
      initTimeoutMs: 300,
    });
    const res = await rawPost(gw.url, KEYS.alice, INIT);
    expect(res.status).toBe(504);
    expect(res.headers.get("mcp-session-id")).toBeNull();
    expect(await waitFor(() => gw!.upstream.childPids().length === 0)).toBe(true);
  });

  it("answers 502 when the command does not exist, with no detail about it", async () => {
    gw = await startStdioGateway({ command: ["/nonexistent/mcp-server-binary"] });
    const res = await rawPost(gw.url, KEYS.alice, INIT);
    expect(res.status).toBe(502);
    expect(await res.text()).not.toContain("nonexistent");
    expect(gw.logLines.some((l) => l.includes("stdio upstream exited") && l.includes("ENOENT"))).toBe(true);
  });

  it("frees a pooled child when its caller leaves, so the next stateless request is served", async () => {
    gw = await startStdioGateway({ poolSize: 1 });
    const h = {
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/call",
      "mcp-name": "sleep",
      accept: "application/json",
    };
    const meta = { "io.modelcontextprotocol/protocolVersion": "2026-07-28" };
    const abort = new AbortController();
    const slow = fetch(gw.url, {
      method: "POST",
      signal: abort.signal,
      headers: { authorization: `Bearer ${KEYS.alice}`, "content-type": "application/json", ...h },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: { name: "sleep", arguments: { ms: 30_000 }, _meta: meta },
      }),
    }).catch(() => undefined);
    await waitFor(() => gw!.upstream.childPids().length === 1);
    await new Promise((r) => setTimeout(r, 200));
    abort.abort();
    await slow;
    const started = Date.now();
    const next = await rawPost(
      gw.url,
      KEYS.alice,
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "pid", arguments: {}, _meta: meta } },
      { ...h, "mcp-name": "pid" },
    );
    expect(next.status).toBe(200);
    const body = (await next.json()) as { id: number; result: { content: Array<{ text: string }> } };
    // The answer is the pid's, not a late "slept" for the abandoned request that also had id 1.
    expect(body.id).toBe(1);
    expect(body.result.content[0]!.text).toMatch(/^\d+$/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe("stdio upstream: HTTP semantics of an SDK server", () => {
  it("answers notifications with 202, unknown sessions with 404 and a missing session id with 400", async () => {
    gw = await startStdioGateway();
    const init = await rawPost(gw.url, KEYS.alice, INIT);
    expect(init.status).toBe(200);
    expect(init.headers.get("content-type")).toMatch(/text\/event-stream/);
    expect(await init.text()).toContain('"serverInfo"');
    const sid = init.headers.get("mcp-session-id")!;
    const h = { "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" };
    const note = await rawPost(
      gw.url,
      KEYS.alice,
      { jsonrpc: "2.0", method: "notifications/initialized" },
      h,
    );
    expect(note.status).toBe(202);
    const unknown = await rawPost(
      gw.url,
      KEYS.alice,
      { jsonrpc: "2.0", id: 2, method: "ping" },
      { ...h, "mcp-session-id": "no-such-session" },
    );
    expect(unknown.status).toBe(404);
    const missing = await rawPost(gw.url, KEYS.alice, { jsonrpc: "2.0", id: 3, method: "ping" });
    expect(missing.status).toBe(400);
    const json = await rawPost(
      gw.url,
      KEYS.alice,
      { jsonrpc: "2.0", id: 4, method: "ping" },
      {
        ...h,
        accept: "application/json",
      },
    );
    expect(json.headers.get("content-type")).toMatch(/application\/json/);
    expect(await json.json()).toEqual({ jsonrpc: "2.0", id: 4, result: {} });
    const del = await fetch(gw.url, {
      method: "DELETE",
      headers: { authorization: `Bearer ${KEYS.alice}`, ...h },
    });
    expect(del.status).toBe(200);
    const after = await rawPost(gw.url, KEYS.alice, { jsonrpc: "2.0", id: 5, method: "ping" }, h);
    expect(after.status).toBe(404);
  });

  it("refuses a request without a credential with 401 and starts no process", async () => {
    gw = await startStdioGateway();
    const res = await fetch(gw.url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify(INIT),
    });
    expect(res.status).toBe(401);
    expect(gw.upstream.childPids()).toEqual([]);
  });

  it("delivers a notification the child sends during a request on that request's stream", async () => {
    gw = await startStdioGateway();
    const { client } = await connectClient(gw.url, KEYS.alice);
    const logs: unknown[] = [];
    client.fallbackNotificationHandler = async (n) => void logs.push(n.params);
    const { LoggingMessageNotificationSchema } = await import("@modelcontextprotocol/sdk/types.js");
    client.setNotificationHandler(LoggingMessageNotificationSchema, async (n) => void logs.push(n.params));
    expect(textOf(await client.callTool({ name: "log", arguments: {} }))).toBe("logged");
    expect(logs).toEqual([{ level: "info", data: "hello log" }]);
    await client.close();
  });

  it("serves a standalone GET stream and refuses a second one with 409", async () => {
    gw = await startStdioGateway();
    const init = await rawPost(gw.url, KEYS.alice, INIT);
    await init.text();
    const h = {
      authorization: `Bearer ${KEYS.alice}`,
      accept: "text/event-stream",
      "mcp-session-id": init.headers.get("mcp-session-id")!,
    };
    const first = await fetch(gw.url, { headers: h });
    expect(first.status).toBe(200);
    expect(first.headers.get("content-type")).toMatch(/text\/event-stream/);
    const second = await fetch(gw.url, { headers: h });
    expect(second.status).toBe(409);
    await first.body?.cancel();
  });
});

describe("stdio upstream: the gate's decisions apply to stdio children", () => {
  it("filters tools/list per caller and refuses a hidden tool's call", async () => {
    gw = await startStdioGateway({ authorizer: bobCannotSeeAdmin });
    const alice = await connectClient(gw.url, KEYS.alice);
    const bob = await connectClient(gw.url, KEYS.bob);
    const aliceTools = (await alice.client.listTools()).tools.map((t) => t.name);
    const bobTools = (await bob.client.listTools()).tools.map((t) => t.name);
    expect(aliceTools).toContain("secret_admin");
    expect(bobTools).not.toContain("secret_admin");
    expect(bobTools).toContain("env");
    const denied = await bob.client.callTool({ name: "secret_admin", arguments: {} });
    expect(denied.isError).toBe(true);
    expect(textOf(denied)).toMatch(/admin scope/);
    const allowed = await alice.client.callTool({ name: "secret_admin", arguments: {} });
    expect(textOf(allowed)).toBe("called secret_admin");
    await alice.client.close();
    await bob.client.close();
  });

  it("filters a JSON (non-SSE) tools/list answer too", async () => {
    gw = await startStdioGateway({ authorizer: bobCannotSeeAdmin });
    const init = await rawPost(gw.url, KEYS.bob, INIT);
    await init.text();
    const res = await rawPost(
      gw.url,
      KEYS.bob,
      { jsonrpc: "2.0", id: 2, method: "tools/list" },
      {
        "mcp-session-id": init.headers.get("mcp-session-id")!,
        "mcp-protocol-version": "2025-06-18",
        accept: "application/json",
      },
    );
    const body = (await res.json()) as { result: { tools: Array<{ name: string }> } };
    expect(body.result.tools.map((t) => t.name)).toEqual(["env", "pid", "sleep", "log"]);
  });
});

describe("stdio upstream: the child's environment and output", () => {
  it("passes only allow-listed variables and configured values to the child", async () => {
    gw = await startStdioGateway({
      parentEnv: {
        PATH: process.env.PATH,
        HOME: "/home/test",
        MCP_API_KEY: "gateway-secret-key-value",
        MCPGATE_PEPPER: "pepper-value",
        DATABASE_URL: "postgres://user:pw@db/x",
        REDIS_URL: "redis://:pw@cache",
        NODE_OPTIONS: "--require /tmp/evil.js",
        GITHUB_TOKEN: "ghp_allowed_for_child",
        BASH_FUNC_x: "() { evil; }",
      },
      envAllow: ["GITHUB_TOKEN", "BASH_FUNC_x"],
      env: { SERVER_MODE: "test" },
    });
    const { client } = await connectClient(gw.url, KEYS.alice);
    const childEnv = JSON.parse(textOf(await client.callTool({ name: "env", arguments: {} }))) as Record<
      string,
      string
    >;
    expect(childEnv.HOME).toBe("/home/test");
    expect(childEnv.GITHUB_TOKEN).toBe("ghp_allowed_for_child");
    expect(childEnv.SERVER_MODE).toBe("test");
    for (const secret of [
      "MCP_API_KEY",
      "MCPGATE_PEPPER",
      "DATABASE_URL",
      "REDIS_URL",
      "NODE_OPTIONS",
      "BASH_FUNC_x",
    ]) {
      expect(childEnv[secret], secret).toBeUndefined();
    }
    await client.close();
  });

  it("builds the default environment from the allow-list only", () => {
    const env = buildChildEnv({ PATH: "/bin", MCP_API_KEY: "x".repeat(20), LANG: "C.UTF-8" });
    expect(env).toEqual({ PATH: "/bin", LANG: "C.UTF-8" });
  });

  it("logs the child's stderr line by line, tagged with the redacted session id", async () => {
    gw = await startStdioGateway();
    const { client, transport } = await connectClient(gw.url, KEYS.alice);
    const sid = transport.sessionId!;
    const pid = gw.upstream.sessionPid(sid)!;
    expect(await waitFor(() => gw!.logLines.some((l) => l.includes(`tiny server started pid=${pid}`)))).toBe(
      true,
    );
    const line = JSON.parse(gw.logLines.find((l) => l.includes(`started pid=${pid}`))!) as Record<
      string,
      unknown
    >;
    expect(line.upstream).toBe(`${sid.slice(0, 8)}…`);
    const ours = gw.logLines.filter((l) => l.includes('"upstream":'));
    expect(ours.length).toBeGreaterThan(0);
    expect(ours.join("\n")).not.toContain(sid);
    await client.close();
  });
});

describe("stdio upstream: 2026-era stateless requests", () => {
  it("serves stateless requests from a bounded pool of gateway-initialized children", async () => {
    gw = await startStdioGateway({ poolSize: 2, authorizer: bobCannotSeeAdmin });
    const meta = { "io.modelcontextprotocol/protocolVersion": "2026-07-28" };
    const call = (id: number, key: string) => sleep2026(gw!, id, key, 100);
    const answers = await Promise.all([1, 1, 1, 1, 1].map((id) => call(id, KEYS.alice)));
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect(a.headers.get("mcp-session-id")).toBeNull();
      expect(await a.json()).toEqual({
        jsonrpc: "2.0",
        id: 1,
        result: { content: [{ type: "text", text: "slept" }] },
      });
    }
    expect(gw.upstream.childPids().length).toBeLessThanOrEqual(2);
    const list = await rawPost(
      gw.url,
      KEYS.bob,
      { jsonrpc: "2.0", id: 7, method: "tools/list", params: { _meta: meta } },
      { "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list", accept: "application/json" },
    );
    const body = (await list.json()) as {
      id: number;
      result: { tools: Array<{ name: string }>; cacheScope?: string };
    };
    expect(body.id).toBe(7);
    expect(body.result.tools.map((t) => t.name)).not.toContain("secret_admin");
    expect(body.result.cacheScope).toBe("private");
    const get = await fetch(gw.url, {
      headers: {
        authorization: `Bearer ${KEYS.alice}`,
        "mcp-protocol-version": "2026-07-28",
        accept: "text/event-stream",
      },
    });
    expect(get.status).toBe(405);
  });

  it("leaves another caller room: one principal holds at most half the pool, its requests queue on its own", async () => {
    gw = await startStdioGateway({ poolSize: 2 });
    const sleep = (id: number, key: string, ms: number) => sleep2026(gw!, id, key, ms);
    // Alice keeps three slow calls in flight: before, they took both children of the pool.
    const alice = [1, 2, 3].map((id) => sleep(id, KEYS.alice, 1_500));
    await new Promise((r) => setTimeout(r, 300));
    const started = performance.now();
    const bob = await sleep(9, KEYS.bob, 10);
    expect(bob.status).toBe(200);
    expect(performance.now() - started).toBeLessThan(1_200);
    for (const a of await Promise.all(alice)) expect(a.status).toBe(200);
  });

  it("holds a principal to its share while its children's identities are being signed (concurrent first requests)", async () => {
    // Signing takes a while (an identity hook, e.g. an assertion): every request of Alice's burst
    // arrives before any of her children exists.
    gw = await startStdioGateway({
      poolSize: 4,
      identity: async () => ({
        ok: true,
        spawnEnv: async () => {
          await new Promise((r) => setTimeout(r, 200));
          return {};
        },
      }),
    });
    const bob = await sleep2026(gw, 1, KEYS.bob, 10);
    expect(bob.status).toBe(200);
    const alice = await Promise.all(
      [1, 2, 3, 4, 5, 6, 7, 8].map((id) => sleep2026(gw!, id, KEYS.alice, 300)),
    );
    for (const a of alice) expect(a.status).toBe(200);
    // Half the pool at most (2 of 4), and Bob's idle child was left alone.
    expect(gw.upstream.childPids().length).toBeLessThanOrEqual(3);
    expect(gw.logLines.filter((l) => l.includes("started pid=")).length).toBeLessThanOrEqual(3);
  });

  it("never serves a narrower token of one principal from a child told wider scopes at start", async () => {
    const tokens: Record<string, string[]> = { "alice-wide": ["read", "admin"], "alice-narrow": ["read"] };
    gw = await startStdioGateway({
      poolSize: 4,
      verifier: {
        kind: "api_key",
        accepts: () => true,
        async verify(token) {
          const scopes = tokens[token];
          if (!scopes) return { ok: false, reason: "invalid" };
          return {
            ok: true,
            identity: {
              principal: "key:alice",
              kind: "api_key",
              subject: "alice",
              scopes,
              displayPrefix: "k_alice",
            },
          };
        },
      },
      // As the assertion mode does: the child is told the caller's scopes when it starts.
      identity: async (entry) => ({
        ok: true,
        spawnEnv: async () => ({ MCPGATE_SCOPES: entry.admission.identity.scopes.join(" ") }),
      }),
    });
    const scopesSeen = async (token: string) => {
      const res = await rawPost(
        gw!.url,
        token,
        {
          jsonrpc: "2.0",
          id: 1,
          method: "tools/call",
          params: {
            name: "env",
            arguments: {},
            _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28" },
          },
        },
        {
          "mcp-protocol-version": "2026-07-28",
          "mcp-method": "tools/call",
          "mcp-name": "env",
          accept: "application/json",
        },
      );
      const body = (await res.json()) as { result: { content: Array<{ text: string }> } };
      return JSON.parse(body.result.content[0]!.text).MCPGATE_SCOPES as string;
    };
    expect(await scopesSeen("alice-wide")).toBe("read admin");
    expect(await scopesSeen("alice-narrow")).toBe("read");
    expect(await scopesSeen("alice-wide")).toBe("read admin");
  });

  it("answers 502 (-31008) and starts no child when the child's identity cannot be made, for sessions and the pool", async () => {
    gw = await startStdioGateway({
      identity: async () => ({
        ok: true,
        spawnEnv: async () => {
          throw new Error("key store down");
        },
      }),
    });
    const session = await rawPost(gw.url, KEYS.alice, INIT);
    expect(session.status).toBe(502);
    expect(await session.json()).toMatchObject({ error: { code: -31008 } });
    const pooled = await sleep2026(gw, 1, KEYS.alice, 10);
    expect(pooled.status).toBe(502);
    expect(await pooled.json()).toMatchObject({ error: { code: -31008 } });
    expect(gw.upstream.childPids()).toEqual([]);
  });

  it("maps a client's cancellation to the id the child saw for that request (sessions rewrite ids)", async () => {
    gw = await startStdioGateway();
    const { client } = await connectClient(gw.url, KEYS.alice);
    const ac = new AbortController();
    const slow = client
      .callTool({ name: "sleep", arguments: { ms: 2_000 } }, undefined, { signal: ac.signal })
      .catch(() => "aborted");
    await new Promise((r) => setTimeout(r, 200));
    ac.abort(); // the SDK client sends notifications/cancelled naming its own request id
    expect(await slow).toBe("aborted");
    await new Promise((r) => setTimeout(r, 200));
    const seen = await client.callTool({ name: "cancels", arguments: {} });
    const { sleeps, cancelled } = JSON.parse((seen.content as Array<{ text: string }>)[0]!.text) as {
      sleeps: string[];
      cancelled: string[];
    };
    await client.close();
    expect(sleeps).toHaveLength(1);
    expect(sleeps[0]).toMatch(/^mcpgate-/);
    expect(cancelled).toEqual([sleeps[0]]);
  });
});
