import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import { mcpAuth } from "../../src/http/express.js";
import { withPolicy } from "../../src/sdk.js";
import { messagesOf, rawPost } from "../helpers/client.js";
import { SECRET_SPELLINGS } from "./secret-spellings.js";

/**
 * Issue 14 item 1 inside an SDK server (`mcpgate/sdk` withPolicy): the handler gets the canonical
 * URI the policy matched, so no spelling reaches the secret, and a non-canonical spelling of an
 * allowed resource is served under its canonical form.
 */
const KEY = "sdk-resource-uri-key-0123456789abcdef";

describe("withPolicy matches and serves canonical resource URIs", () => {
  let server: Server;
  let url: string;
  const reads: string[] = [];

  beforeAll(async () => {
    const app = express();
    app.use(express.json());
    app.use(
      "/mcp",
      mcpAuth({
        verifiers: [createStaticKeyVerifier({ key: KEY, scopes: ["files:read"] })],
        publicUrl: "http://127.0.0.1:1/mcp",
      }),
    );
    app.post("/mcp", async (req, res) => {
      const mcp = new McpServer({ name: "files", version: "1.0.0" });
      withPolicy(mcp, {
        resources: [
          { match: "file:///srv/secret/*", scopes: ["admin"] },
          { match: "file:///srv/shared/*", scopes: ["files:read"] },
        ],
      });
      for (const uri of ["file:///srv/shared/readme.txt", "file:///srv/secret/key.txt"]) {
        mcp.registerResource(uri, uri, {}, async (u) => {
          reads.push(u.href);
          return { contents: [{ uri: u.href, text: `content of ${u.href}` }] };
        });
      }
      const t = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: true,
      });
      res.on("close", () => void t.close());
      await mcp.connect(t);
      await t.handleRequest(req, res, req.body);
    });
    server = await new Promise<Server>((r) => {
      const s = app.listen(0, "127.0.0.1", () => r(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const read = async (uri: string) => {
    const res = await rawPost(
      url,
      { jsonrpc: "2.0", id: 1, method: "resources/read", params: { uri } },
      { authorization: `Bearer ${KEY}` },
    );
    return messagesOf(res.text)[0]!;
  };

  it("never runs the secret's handler, whatever the spelling", async () => {
    for (const s of [...SECRET_SPELLINGS, "file:///srv/shared/..%2Fsecret%2Fkey.txt"]) {
      const m = await read(s);
      expect(m.result, JSON.stringify(s)).toBeUndefined();
      expect(m.error).toBeDefined();
    }
    expect(reads.filter((r) => r.includes("secret"))).toEqual([]);
  });

  it("serves a non-canonical spelling of an allowed resource under its canonical form", async () => {
    const m = await read("FILE://localhost/srv/shared/./readme.txt");
    expect(m.result).toMatchObject({ contents: [{ text: "content of file:///srv/shared/readme.txt" }] });
  });
});
