import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { probeEndpoint } from "../../src/probe/probe.js";
import { hashToolSchemas } from "../../src/probe/schema-hash.js";
import {
  closedPortUrl,
  DEFAULT_TOOLS,
  type SdkTestServer,
  startHtmlServer,
  startModernServer,
  startSdkServer,
  startSilentServer,
  type TestServer,
} from "./helpers/servers.js";

const KEY = "mcpg_Pr0beK3y_s3cretValueThatMustNeverBePrinted1234";

describe("probeEndpoint against a 2025-era SDK server", () => {
  let server: SdkTestServer;
  beforeAll(async () => {
    server = await startSdkServer({ key: KEY });
  });
  afterAll(() => server.close());

  it("reports up with every step timed, the tool count and the challenge", async () => {
    const r = await probeEndpoint(server.url, { key: KEY, timeoutMs: 5000 });
    expect(r.status).toBe("up");
    expect(r.error).toBeUndefined();
    expect(r.challenge).toBe("ok");
    expect(r.protocolVersion).toBe("2025-11-25");
    expect(r.tools).toBe(DEFAULT_TOOLS.length);
    expect(r.schemaHash).toMatch(/^[0-9a-f]{64}$/);
    expect(r.steps.map((s) => s.name)).toEqual([
      "unauthenticated",
      "initialize",
      "tools/list",
      "ping",
      "delete",
    ]);
    expect(r.steps.every((s) => s.ok)).toBe(true);
    expect(r.steps[0]!.httpStatus).toBe(401);
    expect(r.httpStatus).toBe(200);
    for (const s of r.steps) expect(s.latencyMs).toBeGreaterThanOrEqual(0);
  });

  it("ends the session it opened", async () => {
    await probeEndpoint(server.url, { key: KEY, timeoutMs: 5000 });
    expect(server.openSessions()).toBe(0);
  });

  it("gives the same schema hash on every run and a different one when a tool changes", async () => {
    const a = await probeEndpoint(server.url, { key: KEY });
    const b = await probeEndpoint(server.url, { key: KEY });
    expect(a.schemaHash).toBe(b.schemaHash);
    server.setTools([...DEFAULT_TOOLS, { name: "extra", description: "new", field: "x" }]);
    try {
      const c = await probeEndpoint(server.url, { key: KEY });
      expect(c.tools).toBe(3);
      expect(c.schemaHash).not.toBe(a.schemaHash);
    } finally {
      server.setTools(DEFAULT_TOOLS);
    }
  });

  it("reports auth_rejected for a wrong key, without printing either key", async () => {
    const wrong = "mcpg_WrongKey_thisIsNotTheRightSecretAtAll000000";
    const r = await probeEndpoint(server.url, { key: wrong });
    expect(r.status).toBe("auth_rejected");
    expect(r.httpStatus).toBe(401);
    expect(r.error).toMatch(/rejected the probe key/);
    const text = JSON.stringify(r);
    expect(text).not.toContain(wrong);
    expect(text).not.toContain("thisIsNotTheRightSecret");
  });

  it("reports auth_rejected when the server needs a credential and none is given", async () => {
    const r = await probeEndpoint(server.url, {});
    expect(r.status).toBe("auth_rejected");
    expect(r.error).toMatch(/no probe key/);
  });
});

describe("probeEndpoint against a 2026-07-28 server", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startModernServer({ key: KEY });
  });
  afterAll(() => server.close());

  it("speaks server/discover and lists tools without a session", async () => {
    const r = await probeEndpoint(server.url, { key: KEY, timeoutMs: 5000 });
    expect(r.status).toBe("up");
    expect(r.protocolVersion).toBe("2026-07-28");
    expect(r.steps.map((s) => s.name)).toEqual(["unauthenticated", "discover", "tools/list"]);
    expect(r.tools).toBe(DEFAULT_TOOLS.length);
  });
});

describe("probeEndpoint failure classification", () => {
  const servers: TestServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
  });

  it("reports server_error when the auth middleware throws", async () => {
    const s = await startSdkServer({ key: KEY, authThrows: true });
    servers.push(s);
    const r = await probeEndpoint(s.url, { key: KEY });
    expect(r.status).toBe("server_error");
    expect(r.httpStatus).toBe(500);
    expect(r.error).toMatch(/HTTP 500/);
    // The unauthenticated request still gets its 401: only the credential path crashes.
    expect(r.challenge).toBe("ok");
  });

  it("reports unreachable for a closed port", async () => {
    const r = await probeEndpoint(await closedPortUrl(), { key: KEY });
    expect(r.status).toBe("unreachable");
    expect(r.httpStatus).toBe(0);
    expect(r.error).toMatch(/connection refused/);
  });

  it("reports timeout for a server that never answers, close to the deadline", async () => {
    const s = await startSilentServer();
    servers.push(s);
    const started = Date.now();
    const r = await probeEndpoint(s.url, { key: KEY, timeoutMs: 400 });
    expect(r.status).toBe("timeout");
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("reports protocol_error for a web server that is not MCP", async () => {
    const s = await startHtmlServer();
    servers.push(s);
    const r = await probeEndpoint(s.url, { key: KEY });
    expect(r.status).toBe("protocol_error");
    expect(r.challenge).toBe("none");
    expect(r.error).toMatch(/text\/html/);
  });

  it("reports a 401 without WWW-Authenticate as challenge missing", async () => {
    const s = await startSdkServer({ key: KEY, noChallenge: true });
    servers.push(s);
    const r = await probeEndpoint(s.url, { key: KEY });
    expect(r.status).toBe("up");
    expect(r.challenge).toBe("missing");
    expect(r.steps[0]).toMatchObject({ name: "unauthenticated", httpStatus: 401, ok: false });
  });

  it("reports an unprotected server as challenge none", async () => {
    const s = await startSdkServer({});
    servers.push(s);
    const r = await probeEndpoint(s.url, {});
    expect(r.status).toBe("up");
    expect(r.challenge).toBe("none");
  });

  it("never puts the key into the result, even when the server echoes it", async () => {
    const { createServer } = await import("node:http");
    const echo = createServer((req, res) => {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          jsonrpc: "2.0",
          id: null,
          error: { code: -32600, message: `bad ${req.headers.authorization}` },
        }),
      );
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
    const port = (echo.address() as { port: number }).port;
    try {
      const r = await probeEndpoint(`http://127.0.0.1:${port}/mcp`, { key: KEY });
      expect(r.status).toBe("protocol_error");
      expect(r.error).toContain("[redacted]");
      expect(JSON.stringify(r)).not.toContain(KEY);
    } finally {
      echo.close();
    }
  });

  it("throws TypeError for a URL that is not http(s)", async () => {
    await expect(probeEndpoint("ftp://127.0.0.1/mcp")).rejects.toThrow(TypeError);
    await expect(probeEndpoint("not a url")).rejects.toThrow(TypeError);
  });
});

describe("hashToolSchemas", () => {
  it("ignores tool order and key order but not a schema change", () => {
    const a = [
      { name: "b", description: "B", inputSchema: { type: "object", properties: { x: { type: "string" } } } },
      { name: "a", description: "A", inputSchema: { properties: {}, type: "object" } },
    ];
    const b = [
      { name: "a", description: "A", inputSchema: { type: "object", properties: {} } },
      { name: "b", inputSchema: { properties: { x: { type: "string" } }, type: "object" }, description: "B" },
    ];
    expect(hashToolSchemas(a)).toBe(hashToolSchemas(b));
    const c = structuredClone(b);
    (c[1]!.inputSchema.properties as Record<string, unknown>).x = { type: "number" };
    expect(hashToolSchemas(c)).not.toBe(hashToolSchemas(b));
  });
});
