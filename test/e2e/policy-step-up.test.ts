import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/core/audit-event.js";
import { type JwksServer, makeKey, mint, startJwksServer, type TestKey } from "../authn/jwks-fixture.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/** Audit events the gateway logged (the `audit` field of log lines). */
function auditEvents(gw: TestGateway): AuditEvent[] {
  return gw.logs
    .map((l) => JSON.parse(l) as { audit?: AuditEvent })
    .filter((l) => l.audit)
    .map((l) => l.audit!);
}

describe("403 step-up for OAuth identities", () => {
  let key: TestKey;
  let jwks: JwksServer;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  const issuer = "https://as.test.example";

  beforeAll(async () => {
    key = await makeKey("ES256", "k1");
    jwks = await startJwksServer([key.jwk]);
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({
      upstream: { url: upstream.url },
      auth: { jwt: { issuer, jwksUri: jwks.url, algorithms: ["ES256"] } },
      policy: {
        tools: [
          { match: "delete_*", scopes: ["notes:admin", "tools:call"] },
          { match: "*", scopes: ["tools:call"] },
        ],
        resources: [{ match: "*", scopes: ["tools:call"] }],
        prompts: [{ match: "*", scopes: ["tools:call"] }],
      },
    });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await jwks?.stop();
  });

  const token = (scope: string) =>
    mint(key, {
      iss: issuer,
      sub: "alice",
      aud: gw.publicUrl,
      scope,
      iat: Math.floor(Date.now() / 1000),
      exp: Math.floor(Date.now() / 1000) + 300,
    });

  it("answers 403 insufficient_scope naming every needed scope, then admits a token with them on the same session", async () => {
    let current = await token("tools:call");
    const first = current;
    const fetchWithToken: typeof fetch = (input, init) => {
      const headers = new Headers(init?.headers);
      headers.set("authorization", `Bearer ${current}`);
      return fetch(input, { ...init, headers });
    };
    const transport = new StreamableHTTPClientTransport(new URL(gw.url), { fetch: fetchWithToken });
    const client = new Client({ name: "step-up", version: "1.0.0" });
    await client.connect(transport);
    const session = transport.sessionId;
    expect(session).toBeTruthy();
    try {
      const listed = (await client.listTools()).tools.map((t) => t.name);
      expect(listed).not.toContain("delete_note");
      expect(listed).toContain("echo");

      // The raw refusal: status, challenge and body.
      const raw = await fetch(gw.url, {
        method: "POST",
        headers: {
          authorization: `Bearer ${current}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-session-id": session!,
          "mcp-protocol-version": "2025-06-18",
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 9,
          method: "tools/call",
          params: { name: "delete_note", arguments: { name: "todo" } },
        }),
      });
      expect(raw.status).toBe(403);
      const challenge = raw.headers.get("www-authenticate") ?? "";
      expect(challenge).toContain('error="insufficient_scope"');
      expect(challenge).toContain('scope="notes:admin tools:call"');
      expect(challenge).toContain("resource_metadata=");
      expect(await raw.json()).toEqual({ error: "insufficient_scope", scope: "notes:admin tools:call" });

      await expect(client.callTool({ name: "delete_note", arguments: { name: "todo" } })).rejects.toThrow(
        /insufficient_scope/,
      );
      expect(upstream.rpcCalls()).not.toContain("tools/call:delete_note");

      // Step up: same subject, more scope, same session.
      current = await token("tools:call notes:admin");
      const r = await client.callTool({ name: "delete_note", arguments: { name: "todo" } });
      expect(r.content).toEqual([{ type: "text", text: "deleted todo" }]);
      expect(transport.sessionId).toBe(session);
      expect((await client.listTools()).tools.map((t) => t.name)).toContain("delete_note");
      expect(upstream.rpcCalls()).toContain("tools/call:delete_note");
    } finally {
      await client.close();
    }

    const denied = auditEvents(gw).filter((e) => e.type === "denied");
    expect(denied.length).toBeGreaterThanOrEqual(1);
    expect(denied[0]).toMatchObject({ tool: "delete_note", method: "tools/call" });
    expect(denied[0]!.actor).toMatch(/^oauth:/);
    expect(denied[0]!.reason).toContain("notes:admin");
    expect(gw.logs.join("\n")).not.toContain(first.split(".")[2]!);
  });

  it("advertises the policy's scopes in the protected resource metadata", async () => {
    const prm = (await (
      await fetch(new URL("/.well-known/oauth-protected-resource/mcp", gw.url))
    ).json()) as {
      scopes_supported?: string[];
    };
    expect(prm.scopes_supported).toEqual(["notes:admin", "tools:call"]);
  });
});
