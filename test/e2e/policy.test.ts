import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { connectClient, INIT, messagesOf, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/** Tool names chosen to probe the glob: case, look-alikes (Cyrillic е U+0435), path-like characters. */
const TOOLS = [
  "echo",
  "Echo",
  "\u0435cho",
  "delete_note",
  "DELETE_NOTE",
  "files/read",
  "files/../admin",
  "files\\read",
  "filesXread",
  "report_1",
  "report_10",
];

function makeServer(): McpServer {
  const server = new McpServer({ name: "policy-upstream", version: "1.0.0" });
  // The SDK warns (console.warn) about names outside SEP-986; these names are the point of the test.
  const warn = console.warn;
  console.warn = () => {};
  for (const name of TOOLS) {
    server.registerTool(
      name,
      { description: `tool ${name}`, inputSchema: { x: z.string().optional() } },
      async () => ({
        content: [{ type: "text", text: `ran ${name}` }],
      }),
    );
  }
  console.warn = warn;
  server.registerResource("notes", "notes://all", {}, async (uri) => ({
    contents: [{ uri: uri.href, text: "n" }],
  }));
  server.registerResource("secret", "secret://vault", {}, async (uri) => ({
    contents: [{ uri: uri.href, text: "s" }],
  }));
  server.registerPrompt("summarize", {}, async () => ({
    messages: [{ role: "user", content: { type: "text", text: "sum" } }],
  }));
  server.registerPrompt("admin_prompt", {}, async () => ({
    messages: [{ role: "user", content: { type: "text", text: "adm" } }],
  }));
  return server;
}

const POLICY = {
  tools: [
    { match: "delete_*", scopes: ["admin"] },
    { match: "files/*", scopes: ["files:read"] },
    { match: "report_?", scopes: ["reports"] },
    { match: "echo", scopes: ["tools:call"] },
  ],
  resources: [{ match: "notes://*", scopes: ["tools:call"] }],
  prompts: [{ match: "summarize", scopes: ["tools:call"] }],
};

describe("per-tool authorization through the gateway (stored API keys, SDK client)", () => {
  let dir: string;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-policy-"));
    const location = `sqlite:${join(dir, "keys.db")}`;
    const store = await openKeyStore(location);
    keys.reader = (await issueApiKey(store, { name: "reader", scopes: ["tools:call"] })).key;
    keys.files = (await issueApiKey(store, { name: "files", scopes: ["files:read", "reports"] })).key;
    keys.admin = (
      await issueApiKey(store, { name: "admin", scopes: ["tools:call", "admin", "files:*"] })
    ).key;
    await store.close();
    upstream = await startRecordingUpstream({ makeServer });
    gw = await startTestGateway({
      upstream: { url: upstream.url },
      auth: { apiKeys: { store: location } },
      policy: POLICY,
    });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const expected: Record<string, string[]> = {
    reader: ["echo"],
    files: ["files/read", "files/../admin", "report_1"],
    admin: ["echo", "delete_note", "files/read", "files/../admin"],
  };

  for (const who of ["reader", "files", "admin"]) {
    it(`shows the ${who} key exactly the tools it may call, and lets it call exactly those`, async () => {
      const { client } = await connectClient(gw.url, keys[who]);
      try {
        const listed = (await client.listTools()).tools.map((t) => t.name);
        expect(listed.sort()).toEqual([...expected[who]!].sort());
        const before = upstream.rpcCalls().length;
        for (const name of TOOLS) {
          const r = await client.callTool({ name, arguments: {} });
          if (listed.includes(name)) {
            expect(r.isError).toBeFalsy();
            expect(r.content).toEqual([{ type: "text", text: `ran ${name}` }]);
          } else {
            expect(r.isError).toBe(true);
            const text = (r.content as Array<{ text: string }>)[0]!.text;
            expect(text).toContain(JSON.stringify(name).slice(1, -1).slice(0, 5));
            expect(text).not.toContain(keys[who]!.slice(5));
          }
        }
        // Denied calls never reach the upstream.
        const forwarded = upstream
          .rpcCalls()
          .slice(before)
          .filter((c) => c.startsWith("tools/call:"));
        expect(forwarded.sort()).toEqual(listed.map((n) => `tools/call:${n}`).sort());
        // Each denial is audited with the key's display prefix, the tool and the reason; never the key.
        const denied = gw.logs
          .map((l) => JSON.parse(l) as { audit?: Record<string, unknown> })
          .filter((l) => l.audit?.type === "denied" && l.audit.actor === `mcpg_${keys[who]!.split("_")[1]}`)
          .map((l) => l.audit!);
        expect(denied.map((e) => e.tool).sort()).toEqual(TOOLS.filter((t) => !listed.includes(t)).sort());
        expect(String(denied[0]?.reason)).toMatch(/^Forbidden: tool /);
        expect(gw.logs.join("\n")).not.toContain(keys[who]!);
      } finally {
        await client.close();
      }
    });
  }

  it("filters resources and prompts the same way, and refuses reading a hidden one", async () => {
    const { client } = await connectClient(gw.url, keys.reader);
    try {
      expect((await client.listResources()).resources.map((r) => r.uri)).toEqual(["notes://all"]);
      expect((await client.listPrompts()).prompts.map((p) => p.name)).toEqual(["summarize"]);
      await expect(client.readResource({ uri: "secret://vault" })).rejects.toThrow(/secret:\/\/vault/);
      await expect(client.getPrompt({ name: "admin_prompt" })).rejects.toThrow(/admin_prompt/);
      expect((await client.readResource({ uri: "notes://all" })).contents).toHaveLength(1);
      expect(upstream.rpcCalls()).not.toContain("resources/read:secret://vault");
    } finally {
      await client.close();
    }
  });

  it("answers each element of a 2025-03-26 batch: the allowed call is forwarded, the denied one answered locally", async () => {
    const init = await rawPost(
      gw.url,
      { ...INIT, params: { ...INIT.params, protocolVersion: "2025-03-26" } },
      { authorization: `Bearer ${keys.reader}` },
    );
    expect(init.status).toBe(200);
    const session = init.headers.get("mcp-session-id")!;
    const h = {
      authorization: `Bearer ${keys.reader}`,
      "mcp-session-id": session,
      "mcp-protocol-version": "2025-03-26",
    };
    await rawPost(gw.url, { jsonrpc: "2.0", method: "notifications/initialized" }, h);
    const seenBefore = upstream.seen.length;
    const res = await rawPost(
      gw.url,
      [
        { jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "echo", arguments: {} } },
        { jsonrpc: "2.0", id: 8, method: "tools/call", params: { name: "delete_note", arguments: {} } },
      ],
      h,
    );
    expect(res.status).toBe(200);
    const byId = new Map(messagesOf(res.text).map((m) => [m.id, m]));
    expect((byId.get(7)?.result as { content?: unknown } | undefined)?.content).toEqual([
      { type: "text", text: "ran echo" },
    ]);
    expect(byId.get(8)?.result).toMatchObject({ isError: true });
    const forwarded = upstream.seen.slice(seenBefore).map((s) => s.body);
    expect(forwarded.join("\n")).toContain('"echo"');
    expect(forwarded.join("\n")).not.toContain("delete_note");
  });

  it("decides on the body's tool name: a lying Mcp-Name header changes nothing and is refused", async () => {
    const init = await rawPost(gw.url, INIT, { authorization: `Bearer ${keys.reader}` });
    const session = init.headers.get("mcp-session-id")!;
    const h = {
      authorization: `Bearer ${keys.reader}`,
      "mcp-session-id": session,
      "mcp-protocol-version": "2025-06-18",
    };
    await rawPost(gw.url, { jsonrpc: "2.0", method: "notifications/initialized" }, h);
    const before = upstream.rpcCalls().length;
    const lie = await rawPost(
      gw.url,
      { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "delete_note", arguments: {} } },
      { ...h, "mcp-method": "tools/call", "mcp-name": "echo" },
    );
    expect(lie.status).toBe(400);
    const honest = await rawPost(
      gw.url,
      { jsonrpc: "2.0", id: 4, method: "tools/call", params: { name: "echo", arguments: {} } },
      { ...h, "mcp-method": "tools/call", "mcp-name": "delete_note" },
    );
    expect(honest.status).toBe(400);
    const plain = await rawPost(
      gw.url,
      { jsonrpc: "2.0", id: 5, method: "tools/call", params: { name: "delete_note", arguments: {} } },
      h,
    );
    expect(messagesOf(plain.text)[0]?.result).toMatchObject({ isError: true });
    expect(upstream.rpcCalls().slice(before)).not.toContain("tools/call:delete_note");
  });
});
