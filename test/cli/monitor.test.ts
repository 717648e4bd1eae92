import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closedPortUrl, type SdkTestServer, startSdkServer } from "../probe/helpers/servers.js";

const ROOT = resolve(import.meta.dirname, "../..");
const KEY = "mcpg_CliM0nit_monitorCliSecretNeverPrinted00000000";

function mcpgate(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", ...args],
      { cwd: ROOT, env: { ...process.env, ...env }, timeout: 50_000 },
      (err, stdout, stderr) =>
        done({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

describe("mcpgate monitor", { timeout: 60_000 }, () => {
  let server: SdkTestServer;
  let dir: string;
  beforeAll(async () => {
    server = await startSdkServer({ key: KEY });
    dir = mkdtempSync(join(tmpdir(), "mcpgate-monitor-cli-"));
  });
  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("--once probes every target, prints JSON and exits 1 when one is down", async () => {
    const file = join(dir, "once.yaml");
    writeFileSync(
      file,
      [
        "targets:",
        `  - { name: api, url: "${server.url}", keyEnv: MON_KEY }`,
        `  - { name: gone, url: "${await closedPortUrl()}", timeout: 2s }`,
        `history: "sqlite:${join(dir, "once.db")}"`,
      ].join("\n"),
    );
    const r = await mcpgate(["monitor", "--config", file, "--once", "--json"], { MON_KEY: KEY });
    expect(r.code).toBe(1);
    const snap = JSON.parse(r.stdout);
    expect(snap.targets.map((t: { name: string; status: string }) => [t.name, t.status])).toEqual([
      ["api", "up"],
      ["gone", "unreachable"],
    ]);
    expect(r.stdout + r.stderr).not.toContain(KEY);
  });

  it("exits 2 naming the field for an invalid configuration, and for a missing file", async () => {
    const file = join(dir, "bad.json");
    writeFileSync(
      file,
      JSON.stringify({ targets: [{ name: "x", url: "http://127.0.0.1:1/mcp", interval: "soon" }] }),
    );
    const bad = await mcpgate(["monitor", "--config", file, "--once"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/targets\.0\.interval/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    const missing = await mcpgate(["monitor", "--config", join(dir, "nope.yaml")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read monitor config/);
  });

  it("serves the status page until SIGTERM, then exits 0", async () => {
    const file = join(dir, "serve.yaml");
    writeFileSync(
      file,
      [
        "targets:",
        `  - { name: api, url: "${server.url}", keyEnv: MON_KEY, interval: 1s }`,
        "listen: 127.0.0.1:0",
        'history: "memory:"',
      ].join("\n"),
    );
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "monitor", "--config", file],
      {
        cwd: ROOT,
        env: { ...process.env, MON_KEY: KEY },
      },
    );
    try {
      const url = await new Promise<string>((done, fail) => {
        let err = "";
        const timer = setTimeout(() => fail(new Error(`no status page line: ${err}`)), 15_000);
        child.once("exit", (c) => fail(new Error(`monitor exited ${c}: ${err}`)));
        child.stderr.on("data", (d: Buffer) => {
          err += d.toString();
          const m = /status page (http:\/\/\S+)/.exec(err);
          if (m) {
            clearTimeout(timer);
            done(m[1]!);
          }
        });
      });
      let status = "pending";
      for (let i = 0; i < 50 && status === "pending"; i++) {
        const api = (await (await fetch(`${url}api/status`)).json()) as {
          targets: Array<{ status: string }>;
        };
        status = api.targets[0]!.status;
        if (status === "pending") await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe("up");
      const html = await (await fetch(url)).text();
      expect(html).toContain("<svg");
      const code = await new Promise<number | null>((done) => {
        child.once("exit", (c) => done(c));
        child.kill("SIGTERM");
      });
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
