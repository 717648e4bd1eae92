import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { findFreePort } from "../../src/gateway/free-port.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { INIT, rawPost } from "../helpers/client.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";
import { tokenThroughFlow } from "./harness.js";

const REDIRECT = "http://127.0.0.1:9/callback";

/**
 * The gateway's own authorization server in front of two upstreams: each endpoint is its own
 * protected resource (RFC 8707), so a token it issued for one endpoint is refused at the other —
 * through the real flow (registration, API-key login, consent, code exchange) and the real gateway.
 */
describe("the gateway's own tokens, with several upstreams", () => {
  let dir: string;
  let up: RecordingUpstream;
  let gw: TestGateway;
  let key: string;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-as-mounts-"));
    const store = `sqlite:${join(dir, "mcpgate.db")}`;
    const keys = await openKeyStore(store);
    ({ key } = await issueApiKey(keys, { name: "person", scopes: ["tools:call"] }));
    await keys.close();
    up = await startRecordingUpstream();
    const port = await findFreePort("127.0.0.1");
    base = `http://127.0.0.1:${port}`;
    gw = await startTestGateway({
      listen: { host: "127.0.0.1", port },
      publicUrl: base,
      auth: { apiKeys: { store } },
      authServer: { login: { apiKey: {} } },
      policy: { default: "deny", tools: [{ match: "*", scopes: ["tools:call"] }] },
      upstreams: [
        { name: "notes", path: "/notes/mcp", url: up.url },
        { name: "files", path: "/files/mcp", url: up.url },
      ],
    });
  }, 30_000);

  afterAll(async () => {
    await gw?.close();
    await up?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A token for `resource`, through the whole code flow with the stored key's login. */
  async function tokenFor(resource: string): Promise<string> {
    const tok = await tokenThroughFlow(base, key, resource, REDIRECT);
    expect(tok.status).toBe(200);
    return tok.body.access_token!;
  }

  it("accepts a token issued for one endpoint there, and refuses it at the other (invalid_token)", async () => {
    const forNotes = await tokenFor(`${base}/notes/mcp`);
    const auth = { authorization: `Bearer ${forNotes}` };
    expect((await rawPost(`${base}/notes/mcp`, INIT, auth)).status).toBe(200);
    const elsewhere = await rawPost(`${base}/files/mcp`, INIT, auth);
    expect(elsewhere.status).toBe(401);
    expect(elsewhere.headers.get("www-authenticate")).toContain('error="invalid_token"');
    // And the other way round.
    const forFiles = await tokenFor(`${base}/files/mcp`);
    expect((await rawPost(`${base}/files/mcp`, INIT, { authorization: `Bearer ${forFiles}` })).status).toBe(
      200,
    );
    expect((await rawPost(`${base}/notes/mcp`, INIT, { authorization: `Bearer ${forFiles}` })).status).toBe(
      401,
    );
  });
});
