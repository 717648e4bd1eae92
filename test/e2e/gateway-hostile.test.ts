import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

/**
 * Issue 13 item 5: the upstream is not trusted either. Its 401/403 (with its own challenge, pointing
 * at another authorization server) must never reach a client holding a valid gateway credential as
 * if it were ours; its cookies, challenges and hop-by-hop headers stay at the gateway; its redirects
 * are never followed nor relayed.
 */
const KEY = "hostile-test-key-0123456789abcdef0";
const UPSTREAM_SECRET = "upstream-secret-credential-abcdef0123456789";
type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  return new Promise((r) =>
    server.listen(0, "127.0.0.1", () =>
      r({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }),
    ),
  );
}

describe("a hostile upstream", () => {
  let behave: Handler;
  let upstream: { server: Server; url: string };
  let elsewhere: { server: Server; url: string };
  let elsewhereHits = 0;
  let gw: TestGateway;
  const auth = { authorization: `Bearer ${KEY}` };

  beforeAll(async () => {
    upstream = await listen((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => behave(req, res, body));
    });
    elsewhere = await listen((req, res) => {
      elsewhereHits++;
      req.resume();
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
    gw = await startTestGateway(
      { upstream: { url: `${upstream.url}/mcp`, headers: { Authorization: `Bearer ${UPSTREAM_SECRET}` } } },
      { MCP_API_KEY: KEY },
      "info",
    );
  });
  afterAll(async () => {
    await gw?.close();
    for (const s of [upstream, elsewhere]) {
      s.server.closeAllConnections();
      await new Promise<void>((r) => s.server.close(() => r()));
    }
  });
  beforeEach(() => {
    elsewhereHits = 0;
  });

  describe.each([401, 403])("answering %i with its own challenge", (status) => {
    it("becomes a 502 JSON-RPC error for the client: no challenge, no cookie, no upstream detail", async () => {
      behave = (_req, res) =>
        res
          .writeHead(status, {
            "content-type": "application/json",
            "www-authenticate":
              'Bearer resource_metadata="https://evil.example/.well-known/oauth-protected-resource"',
            "set-cookie": "upstream_session=abc; HttpOnly",
          })
          .end(
            JSON.stringify({ error: "invalid_token", error_description: "token for https://evil.example" }),
          );
      const r = await rawPost(gw.url, INIT, auth);
      expect(r.status).toBe(502);
      expect(r.headers.get("www-authenticate")).toBeNull();
      expect(r.headers.get("set-cookie")).toBeNull();
      const body = r.json() as { error: { code: number; message: string } };
      expect(body.error.code).toBe(-31006);
      expect(r.text).not.toContain("evil.example");
      expect(r.text).not.toContain(UPSTREAM_SECRET);
    });

    it("is audited (and logged) as an upstream credential problem, without the credential", async () => {
      behave = (_req, res) => res.writeHead(status, { "www-authenticate": "Bearer" }).end();
      await rawPost(gw.url, INIT, auth);
      await gw.observability.observer.flush();
      const lines = gw.logs.filter((l) => l.includes('"upstream_credentials"'));
      expect(lines.length).toBeGreaterThan(0);
      expect(gw.logs.join("\n")).not.toContain(UPSTREAM_SECRET);
      expect(gw.logs.join("\n")).not.toContain(KEY);
    });
  });

  it("keeps its cookies, challenges and hop-by-hop headers to itself on a success", async () => {
    behave = (_req, res, body) =>
      res
        .writeHead(200, {
          "content-type": "application/json",
          "mcp-session-id": "s-hostile-0123456789",
          "set-cookie": "tracker=1",
          "www-authenticate": 'Bearer realm="upstream"',
          "proxy-authenticate": "Basic",
          "x-upstream-internal": "10.0.0.7",
          "strict-transport-security": "max-age=0",
          connection: "keep-alive, x-upstream-internal",
        })
        .end(
          JSON.stringify({
            jsonrpc: "2.0",
            id: JSON.parse(body).id,
            result: {
              protocolVersion: "2025-06-18",
              capabilities: {},
              serverInfo: { name: "h", version: "1" },
            },
          }),
        );
    const r = await rawPost(gw.url, INIT, auth);
    expect(r.status).toBe(200);
    expect(r.headers.get("mcp-session-id")).toBe("s-hostile-0123456789");
    for (const h of [
      "set-cookie",
      "www-authenticate",
      "proxy-authenticate",
      "x-upstream-internal",
      "strict-transport-security",
    ])
      expect(r.headers.get(h), h).toBeNull();
    expect((r.json() as { id: number }).id).toBe(1);
  });

  it.each([301, 302, 307, 308])("never follows nor relays a %i redirect", async (status) => {
    behave = (_req, res) => res.writeHead(status, { location: `${elsewhere.url}/steal` }).end();
    const r = await rawPost(gw.url, INIT, auth);
    expect(r.status).toBe(502);
    expect(r.headers.get("location")).toBeNull();
    expect((r.json() as { error: { code: number } }).error.code).toBe(-31007);
    expect(elsewhereHits).toBe(0);
  });

  it("refuses an answer whose id the gateway never issued (it cannot be attributed, so not filtered)", async () => {
    behave = (_req, res) =>
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ jsonrpc: "2.0", id: 1, result: { tools: [{ name: "anything" }] } }));
    const r = await rawPost(gw.url, INIT, auth);
    expect(r.status).toBe(502);
    expect(r.text).not.toContain("anything");
  });
});
