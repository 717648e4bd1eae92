import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canonicalResourceUri } from "../../src/authz/resource-uri.js";
import { SECRET_SPELLINGS } from "../authz/secret-spellings.js";
import { connectClient, messagesOf, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * The attacker's test of issue 14 item 1: a real SDK upstream resolving `params.uri` with its own
 * `new URL()` (McpServer's resources/read), resources under file:///srv/..., a key allowed only
 * file:///srv/shared/* and file:///srv/docs/*. No spelling may reach the secret.
 */
const KEY = "static-test-key-resource-uri-0123456789abcdef";
const auth = { authorization: `Bearer ${KEY}` };

const reads: string[] = [];

function makeServer(): McpServer {
  const server = new McpServer({ name: "files", version: "1.0.0" });
  const file = (name: string, uri: string) =>
    server.registerResource(name, uri, {}, async (u) => {
      reads.push(u.href);
      return { contents: [{ uri: u.href, text: `content of ${u.href}` }] };
    });
  file("readme", "file:///srv/shared/readme.txt");
  file("key", "file:///srv/secret/key.txt");
  const template = (name: string, uri: string) =>
    server.registerResource(
      name,
      new ResourceTemplate(uri, { list: undefined, complete: { name: () => [`${name}-a`, `${name}-b`] } }),
      {},
      async (u) => {
        reads.push(u.href);
        return { contents: [{ uri: u.href, text: `template ${name}` }] };
      },
    );
  template("docs", "file:///srv/docs/{name}");
  template("secrets", "file:///srv/secret/{name}");
  return server;
}

describe("resource policy on canonical URIs, against an SDK upstream (issue 14 item 1)", () => {
  let upstream: RecordingUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    upstream = await startRecordingUpstream({ makeServer, stateless: true, jsonResponse: true });
    gw = await startTestGateway(
      {
        upstream: { url: upstream.url },
        auth: { staticKey: { scopes: ["files:read"] } },
        policy: {
          resources: [
            { match: "file:///srv/secret/*", scopes: ["admin"] },
            { match: "file:///srv/shared/*", scopes: ["files:read"] },
            { match: "file:///srv/docs/*", scopes: ["files:read"] },
          ],
        },
      },
      { MCP_API_KEY: KEY },
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  /** Every `params.uri` / `ref.uri` the upstream received. */
  function urisSeen(): string[] {
    return upstream.seen
      .flatMap((s) => (s.body ? messagesOf(s.body) : []))
      .map((m) => m.params as { uri?: string; ref?: { uri?: string } } | undefined)
      .map((p) => p?.uri ?? p?.ref?.uri)
      .filter((u): u is string => typeof u === "string");
  }

  const rpc = (id: number, method: string, params: unknown) =>
    rawPost(gw.url, { jsonrpc: "2.0", id, method, params }, auth);

  it("serves the canonical URI of an allowed resource (SDK client)", async () => {
    const { client } = await connectClient(gw.url, KEY);
    try {
      const r = await client.readResource({ uri: "file:///srv/shared/readme.txt" });
      expect(r.contents[0]).toMatchObject({ text: "content of file:///srv/shared/readme.txt" });
      const listed = (await client.listResources()).resources.map((x) => x.uri);
      expect(listed).toEqual(["file:///srv/shared/readme.txt"]);
      const templates = (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
      expect(templates).toEqual(["file:///srv/docs/{name}"]);
    } finally {
      await client.close();
    }
  });

  it("never lets any spelling of the secret reach it: read, subscribe, unsubscribe", async () => {
    // Sanity: the upstream itself resolves each spelling to the secret (its own new URL()).
    for (const s of SECRET_SPELLINGS.filter((x) => !/%(73|6B)/.test(x))) {
      expect(new URL(s).href).toBe("file:///srv/secret/key.txt");
    }
    let n = 100;
    for (const uri of [...SECRET_SPELLINGS, "file:///srv/shared/..%2Fsecret%2Fkey.txt"]) {
      for (const method of ["resources/read", "resources/subscribe", "resources/unsubscribe"]) {
        const res = await rpc(n++, method, { uri });
        const [m] = res.status === 200 ? messagesOf(res.text) : [JSON.parse(res.text)];
        expect(m?.result, `${method} ${JSON.stringify(uri)}`).toBeUndefined();
        expect(m?.error, `${method} ${JSON.stringify(uri)}`).toBeDefined();
        expect(res.text).not.toContain("content of");
      }
    }
    expect(reads.filter((r) => r.includes("secret"))).toEqual([]);
    // Whatever reached the upstream was in canonical form and allowed.
    for (const u of urisSeen()) {
      expect(canonicalResourceUri(u)).toEqual({ ok: true, value: u });
      expect(u).not.toContain("secret");
    }
  });

  it("refuses what does not parse with 400, and over-long URIs with 400, without forwarding", async () => {
    const before = upstream.seen.length;
    const long = await rpc(1, "resources/read", { uri: `file:///srv/shared/${"a".repeat(9000)}` });
    expect(long.status).toBe(400);
    const bad = await rpc(2, "resources/read", { uri: "not a uri" });
    expect(bad.status).toBe(400);
    const encoded = await rpc(3, "resources/read", { uri: "file:///srv/shared/..%2Fsecret%2Fkey.txt" });
    expect(encoded.status).toBe(400);
    expect(upstream.seen.length).toBe(before);
  });

  it("forwards exactly the authorized (canonical) form of a non-canonical spelling", async () => {
    const res = await rpc(3, "resources/read", { uri: "FILE://localhost/srv/shared/./readme.txt" });
    expect(res.status).toBe(200);
    expect(messagesOf(res.text)[0]?.result).toMatchObject({
      contents: [{ text: "content of file:///srv/shared/readme.txt" }],
    });
    expect(urisSeen()).toContain("file:///srv/shared/readme.txt");
    expect(urisSeen().some((u) => u.includes("FILE") || u.includes("localhost"))).toBe(false);
  });

  it("in the 2026 era refuses a non-canonical URI with 400 naming the canonical form (Mcp-Name repeats it)", async () => {
    const before = upstream.seen.length;
    const uri = "FILE://localhost/srv/shared/readme.txt";
    const res = await rawPost(
      gw.url,
      {
        jsonrpc: "2.0",
        id: 40,
        method: "resources/read",
        params: { uri, _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } },
      },
      { ...auth, "mcp-protocol-version": "2026-07-28", "mcp-method": "resources/read", "mcp-name": uri },
    );
    expect(res.status).toBe(400);
    expect(res.text).toContain("file:///srv/shared/readme.txt");
    expect(upstream.seen.length).toBe(before);
  });

  it("checks completion references on the template: allowed docs, denied secrets in any spelling", async () => {
    const complete = (uri: string, id: number) =>
      rpc(id, "completion/complete", {
        ref: { type: "ref/resource", uri },
        argument: { name: "name", value: "" },
      });
    const ok = await complete("file:///srv/docs/{name}", 10);
    expect(messagesOf(ok.text)[0]?.result).toMatchObject({ completion: { values: ["docs-a", "docs-b"] } });
    for (const [i, uri] of [
      "file:///srv/secret/{name}",
      "FILE:///srv/secret/{name}",
      "file://localhost/srv/secret/{name}",
      "file:///srv/docs/../secret/{name}",
      "file:///srv/%73ecret/{name}",
    ].entries()) {
      const res = await complete(uri, 20 + i);
      expect(res.text, uri).not.toContain("secrets-a");
    }
  });
});
