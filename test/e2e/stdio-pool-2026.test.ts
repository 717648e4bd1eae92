import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as StreamableHTTPClientTransportV2,
} from "@modelcontextprotocol/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { messagesOf, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

/**
 * Issue 14 item 4: 2026-07-28 requests to a stdio upstream are served by pooled children that are
 * never shared between principals, and never sent a 2025 `initialize` (a v2-SDK server learns its
 * era from its first 2026 message). One v2 server (`serveStdio`) and one 2025-only server (SDK 1.x),
 * both keeping a note in the process.
 */
const V2 = [process.execPath, "test/e2e/fixtures/notes-stdio-v2.mjs"];
const V1 = [process.execPath, "test/e2e/fixtures/notes-stdio-v1.mjs"];
const META = { "io.modelcontextprotocol/protocolVersion": "2026-07-28" };

for (const [name, command] of [
  ["v2 SDK server (serveStdio)", V2],
  ["2025-only server (SDK 1.x)", V1],
] as const) {
  describe(`stdio 2026 pool, ${name}`, () => {
    let dir: string;
    let gw: TestGateway;
    const keys: Record<string, string> = {};

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "mcpgate-pool-"));
      const location = `sqlite:${join(dir, "keys.db")}`;
      const store = await openKeyStore(location);
      keys.a = (await issueApiKey(store, { name: "a", scopes: [] })).key;
      keys.b = (await issueApiKey(store, { name: "b", scopes: [] })).key;
      await store.close();
      gw = await startTestGateway({
        upstream: { command: [...command] },
        auth: { apiKeys: { store: location } },
      });
    });
    afterAll(async () => {
      await gw?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    /** One 2026-07-28 tools/call, as a v2 client sends it (headers and per-request _meta). */
    const call = async (key: string, id: number, tool: string, args: Record<string, unknown> = {}) => {
      const res = await rawPost(
        gw.url,
        {
          jsonrpc: "2.0",
          id,
          method: "tools/call",
          params: {
            name: tool,
            arguments: args,
            _meta: {
              ...META,
              "io.modelcontextprotocol/clientInfo": { name: "raw", version: "1" },
              "io.modelcontextprotocol/clientCapabilities": {},
            },
          },
        },
        {
          authorization: `Bearer ${key}`,
          "mcp-protocol-version": "2026-07-28",
          "mcp-method": "tools/call",
          "mcp-name": tool,
        },
      );
      const [m] = messagesOf(res.text);
      return JSON.stringify(m?.result ?? m?.error ?? res.text);
    };

    it("never serves one principal's 2026 request from a child another principal used", async () => {
      expect(await call(keys.a!, 1, "note_set", { value: "A-private" })).toContain("ok");
      expect(await call(keys.a!, 2, "note_get")).toContain("note=A-private");
      for (let i = 0; i < 6; i++) {
        const seen = await call(keys.b!, 10 + i, "note_get");
        expect(seen).toContain("note=");
        expect(seen).not.toContain("A-private");
      }
    });

    if (command === V2) {
      it("serves a v2 client pinned to 2026-07-28 (no 2025 initialize reaches the child first)", async () => {
        const client = new ClientV2(
          { name: "pinned", version: "2.0.0" },
          { versionNegotiation: { mode: { pin: "2026-07-28" } } },
        );
        await client.connect(
          new StreamableHTTPClientTransportV2(new URL(gw.url), {
            requestInit: { headers: { authorization: `Bearer ${keys.b}` } },
          }),
        );
        try {
          expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual([
            "note_get",
            "note_set",
          ]);
          const r = await client.callTool({ name: "note_get", arguments: {} });
          expect(JSON.stringify(r.content)).not.toContain("A-private");
        } finally {
          await client.close();
        }
      });
    }
  });
}

describe("stdio children: one principal cannot take every slot (upstream.maxChildrenPerPrincipal)", () => {
  let dir: string;
  let gw: TestGateway;
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-children-"));
    const location = `sqlite:${join(dir, "keys.db")}`;
    const store = await openKeyStore(location);
    keys.a = (await issueApiKey(store, { name: "a", scopes: [] })).key;
    keys.b = (await issueApiKey(store, { name: "b", scopes: [] })).key;
    await store.close();
    gw = await startTestGateway({
      upstream: { command: [...V1], maxChildren: 4, maxChildrenPerPrincipal: 2 },
      auth: { apiKeys: { store: location } },
      sessions: { max: 100, perPrincipal: 50 },
    });
  });
  afterAll(async () => {
    await gw?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const init = (key: string) =>
    rawPost(
      gw.url,
      {
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: {
          protocolVersion: "2025-06-18",
          capabilities: {},
          clientInfo: { name: "raw", version: "1" },
        },
      },
      { authorization: `Bearer ${key}` },
    );

  it("refuses a third child of one key with 429 and Retry-After while another key still gets one", async () => {
    expect((await init(keys.a!)).status).toBe(200);
    expect((await init(keys.a!)).status).toBe(200);
    const third = await init(keys.a!);
    expect(third.status).toBe(429);
    expect(Number(third.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await init(keys.b!)).status).toBe(200);
    // A's 2026-era requests need a pooled child too: its share is taken, so it waits; B's are served.
    const body = (id: number) => ({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: {
        name: "note_get",
        arguments: {},
        _meta: {
          ...META,
          "io.modelcontextprotocol/clientInfo": { name: "raw", version: "1" },
          "io.modelcontextprotocol/clientCapabilities": {},
        },
      },
    });
    const h = (key: string) => ({
      authorization: `Bearer ${key}`,
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/call",
      "mcp-name": "note_get",
    });
    expect((await rawPost(gw.url, body(5), h(keys.a!))).status).toBe(429);
    const served = await rawPost(gw.url, body(6), h(keys.b!));
    expect(served.status).toBe(200);
    expect(served.text).toContain("note=");
  });
});
