import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/**
 * Issue 13 items 1 and 6, with real clients: an oversized body is answered 413 and the client can
 * read it (Node's fetch — what the SDK client uses —, undici and curl); the credential is checked
 * before the body is read and before `100 Continue`; a refused notification gets 202 and no body.
 */
const KEY = "edges-test-key-0123456789abcdef0123";
const TEN_MIB = "x".repeat(10 * 1024 * 1024);
const bigBody = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "tools/call",
  params: { name: "echo", arguments: { text: TEN_MIB } },
});

describe("the front door's edges", () => {
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  let dir: string;
  let probeKey: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-edges-"));
    const location = `sqlite:${join(dir, "keys.db")}`;
    const store = await openKeyStore(location);
    probeKey = (await issueApiKey(store, { name: "uptime", probe: true })).key;
    await store.close();
    upstream = await startRecordingUpstream();
    gw = await startTestGateway(
      { upstream: { url: upstream.url }, auth: { apiKeys: { store: location } } },
      { MCP_API_KEY: KEY },
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe("413 for a 10 MiB body, readable by the client", () => {
    it("Node's fetch (the SDK client's transport) reads the 413 and its JSON-RPC error", async () => {
      const before = upstream.seen.length;
      const res = await fetch(gw.url, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: bigBody,
      });
      expect(res.status).toBe(413);
      const body = (await res.json()) as { error: { code: number; message: string } };
      expect(body.error.code).toBe(-31014);
      expect(body.error.message).toMatch(/Payload Too Large/);
      expect(upstream.seen.length).toBe(before);
    });

    it("undici reads it too", async () => {
      const res = await request(gw.url, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: bigBody,
      });
      expect(res.statusCode).toBe(413);
      expect(((await res.body.json()) as { error: { code: number } }).error.code).toBe(-31014);
    });

    it("curl reads it (curl sends Expect: 100-continue for a body this size: no 100 comes)", async () => {
      const file = join(dir, "big.json");
      writeFileSync(file, bigBody);
      const { stdout } = await promisify(execFile)(
        "curl",
        [
          "-sS",
          "-o",
          "-",
          "-w",
          "\n%{http_code}",
          "-H",
          `authorization: Bearer ${KEY}`,
          "-H",
          "content-type: application/json",
          "--data-binary",
          `@${file}`,
          gw.url,
        ],
        { maxBuffer: 1024 * 1024 },
      );
      const [text, code] = stdout.split("\n");
      expect(code).toBe("413");
      expect((JSON.parse(text!) as { error: { code: number } }).error.code).toBe(-31014);
    });

    it("a caller without a credential gets a readable 401 for its 10 MiB body, not a reset", async () => {
      const res = await fetch(gw.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: bigBody,
      });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer /);
      await res.text();
    });
  });

  describe("Expect: 100-continue", () => {
    /** Send only the head with Expect: 100-continue; return the first status line that comes back. */
    function firstLine(
      headers: Record<string, string>,
      body: string,
    ): Promise<{ line: string; all: string }> {
      const u = new URL(gw.url);
      return new Promise((resolve, reject) => {
        const sock = connect(Number(u.port), u.hostname);
        let data = "";
        const timer = setTimeout(() => {
          sock.destroy();
          resolve({ line: data.split("\r\n")[0]!, all: data });
        }, 3_000);
        sock.on("data", (d) => {
          data += d;
          if (data.includes("\r\n\r\n")) {
            clearTimeout(timer);
            sock.destroy();
            resolve({ line: data.split("\r\n")[0]!, all: data });
          }
        });
        sock.on("error", reject);
        const head = Object.entries({
          host: u.host,
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(body)),
          expect: "100-continue",
          ...headers,
        })
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join("");
        sock.write(`POST ${u.pathname} HTTP/1.1\r\n${head}\r\n`);
      });
    }

    it("answers 401 without a 100 to a caller without a credential, and reads no body", async () => {
      const before = upstream.seen.length;
      const r = await firstLine({}, JSON.stringify(INIT));
      expect(r.line).toBe("HTTP/1.1 401 Unauthorized");
      expect(r.all).not.toMatch(/100 Continue/);
      expect(upstream.seen.length).toBe(before);
    });

    it("answers 401 without a 100 to a wrong credential", async () => {
      const r = await firstLine(
        { authorization: "Bearer wrong-key-0123456789abcdefghij" },
        JSON.stringify(INIT),
      );
      expect(r.line).toBe("HTTP/1.1 401 Unauthorized");
      expect(r.all).not.toMatch(/100 Continue/);
    });

    it("answers 413 without a 100 when the declared length is over the limit", async () => {
      const r = await firstLine({ authorization: `Bearer ${KEY}` }, bigBody);
      expect(r.line).toBe("HTTP/1.1 413 Payload Too Large");
    });

    it("sends 100 Continue once the credential is accepted", async () => {
      const r = await firstLine({ authorization: `Bearer ${KEY}` }, JSON.stringify(INIT));
      expect(r.line).toBe("HTTP/1.1 100 Continue");
    });
  });

  describe("a refused notification", () => {
    it("gets 202 and no body (JSON-RPC §4.1: a notification is never answered), and is not forwarded", async () => {
      const before = upstream.seen.length;
      const r = await rawPost(
        gw.url,
        { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 1 } },
        { authorization: `Bearer ${probeKey}` },
      );
      expect(r.status).toBe(202);
      expect(r.text).toBe("");
      expect(upstream.seen.length).toBe(before);
    });

    it("is dropped from a batch, whose refused request is still answered", async () => {
      const r = await rawPost(
        gw.url,
        [
          { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 1 } },
          { jsonrpc: "2.0", id: 5, method: "tools/call", params: { name: "echo", arguments: {} } },
        ],
        { authorization: `Bearer ${probeKey}`, "mcp-protocol-version": "2025-03-26" },
      );
      expect(r.status).toBe(200);
      expect(JSON.stringify(r.json())).toContain('"id":5');
    });
  });
});
