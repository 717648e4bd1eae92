import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { probeEndpoint } from "../../src/probe/probe.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

const ROOT = resolve(import.meta.dirname, "../..");

describe("probing an mcpgate gateway with a read-only probe key", () => {
  let dir: string;
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  let probeKey: string;
  let revokedKey: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-probe-gw-"));
    const location = `sqlite:${join(dir, "keys.db")}`;
    const store = await openKeyStore(location);
    probeKey = (await issueApiKey(store, { name: "uptime", probe: true })).key;
    const revoked = await issueApiKey(store, { name: "old-uptime", probe: true });
    revokedKey = revoked.key;
    await store.revoke(revoked.record.id);
    await store.close();
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({ upstream: { url: upstream.url }, auth: { apiKeys: { store: location } } });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("reports up through the real MCP path, with the gateway's 401 challenge", async () => {
    const r = await probeEndpoint(gw.url, { key: probeKey, timeoutMs: 5000 });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe("up");
    expect(r.challenge).toBe("ok");
    expect(r.tools).toBeGreaterThan(0);
    expect(r.steps.find((s) => s.name === "initialize")?.ok).toBe(true);
    // The probe only reads: nothing but lifecycle and list/ping calls reached the upstream.
    expect(upstream.rpcCalls().filter((m) => m.startsWith("tools/call"))).toEqual([]);
    // The gateway never forwards the probe key upstream.
    expect(JSON.stringify(upstream.seen)).not.toContain(probeKey);
  });

  it("exits 0 from the CLI for the gateway", async () => {
    const code = await new Promise<number>((done) => {
      execFile(
        process.execPath,
        ["--import", "tsx", "src/cli/main.ts", "probe", gw.url, "--json"],
        { cwd: ROOT, env: { ...process.env, MCPGATE_PROBE_KEY: probeKey }, timeout: 20_000 },
        (err, stdout) => {
          if (!err) expect(JSON.parse(stdout).status).toBe("up");
          done(err ? (typeof err.code === "number" ? err.code : -1) : 0);
        },
      );
    });
    expect(code).toBe(0);
  });

  it("reports auth_rejected for a revoked key and for a made-up one", async () => {
    for (const key of [revokedKey, "mcpg_AAAAAAAA_notARealSecretButWellFormedEnough0000"]) {
      const r = await probeEndpoint(gw.url, { key });
      expect(r.status).toBe("auth_rejected");
      expect(r.httpStatus).toBe(401);
      expect(JSON.stringify(r)).not.toContain(key);
    }
  });
});
