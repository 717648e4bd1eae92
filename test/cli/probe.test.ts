import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closedPortUrl, type SdkTestServer, startSdkServer } from "../probe/helpers/servers.js";

const ROOT = resolve(import.meta.dirname, "../..");
const KEY = "mcpg_CliPr0be_cliSecretThatMustNotBeEchoed99999999";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function mcpgate(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", ...args],
      { cwd: ROOT, env: { ...process.env, MCPGATE_PROBE_KEY: "", ...env }, timeout: 50_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

describe("mcpgate probe", { timeout: 60_000 }, () => {
  let server: SdkTestServer;
  beforeAll(async () => {
    server = await startSdkServer({ key: KEY });
  });
  afterAll(() => server.close());

  it("exits 0 and prints the DESIGN.md §6 JSON shape for an up endpoint", async () => {
    const r = await mcpgate(["probe", server.url, "--key", KEY, "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ status: "up", httpStatus: 200, tools: 2, challenge: "ok" });
    expect(typeof out.latencyMs).toBe("number");
    expect(out.schemaHash).toMatch(/^[0-9a-f]{64}$/);
    for (const s of out.steps)
      expect(Object.keys(s).sort()).toEqual(["httpStatus", "latencyMs", "name", "ok"]);
    expect(r.stdout + r.stderr).not.toContain(KEY);
  });

  it("reads the key from MCPGATE_PROBE_KEY and prints a table without it", async () => {
    const r = await mcpgate(["probe", server.url], { MCPGATE_PROBE_KEY: KEY });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/status\s+up/);
    expect(r.stdout).toMatch(/tools\/list\s+200/);
    expect(r.stdout + r.stderr).not.toContain(KEY);
  });

  it("exits 1 with auth_rejected for a wrong key", async () => {
    const r = await mcpgate(["probe", server.url, "--key", "mcpg_wrong_key", "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).status).toBe("auth_rejected");
    expect(r.stdout).not.toContain("mcpg_wrong_key");
  });

  it("exits 1 with unreachable for a closed port", async () => {
    const r = await mcpgate(["probe", await closedPortUrl(), "--json", "--timeout", "2s"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).status).toBe("unreachable");
  });

  it("exits 2 without a stack trace for usage errors", async () => {
    for (const args of [
      ["probe", server.url, "--timeout", "soon"],
      ["probe", "not-a-url"],
      ["probe", server.url, "--header", "no colon here"],
      ["probe", server.url, "--no-such-flag"],
      ["probe"],
    ]) {
      const r = await mcpgate(args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/error/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
