import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TINY_SERVER } from "../gateway/stdio-helpers.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

const ROOT = resolve(import.meta.dirname, "../..");

function mcpgate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", ...args],
      { cwd: ROOT, env: { ...process.env, MCPGATE_STORE: "" }, timeout: 50_000 },
      (err, stdout, stderr) =>
        done({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

describe("mcpgate policy explain --upstream NAME (upstreams:)", () => {
  let dir: string;
  let config: string;
  let notes: RecordingUpstream;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-explain-upstreams-"));
    notes = await startRecordingUpstream();
    config = join(dir, "gw.json");
    writeFileSync(
      config,
      JSON.stringify({
        policy: { tools: [{ match: "*", scopes: ["top"] }] },
        upstreams: [
          {
            name: "notes",
            path: "/notes/mcp",
            url: notes.url,
            policy: { tools: [{ match: "echo", scopes: ["tools:call"] }] },
          },
          { name: "files", path: "/files/mcp", command: TINY_SERVER },
        ],
      }),
    );
  });
  afterAll(async () => {
    await notes?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("explains the named upstream's own policy against its live items", async () => {
    const r = await mcpgate([
      "policy",
      "explain",
      "--config",
      config,
      "--upstream",
      "notes",
      "--scopes",
      "tools:call",
      "--live",
      "--json",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.upstream).toBe("notes");
    expect(out.rules.map((x: { match: string }) => x.match)).toEqual(["echo"]);
    const visible = out.items
      .filter((i: { visible: boolean }) => i.visible)
      .map((i: { name: string }) => i.name);
    expect(visible).toEqual(["echo"]);
  }, 60_000);

  it("falls back to the top-level policy and lists a stdio upstream", async () => {
    const r = await mcpgate([
      "policy",
      "explain",
      "--config",
      config,
      "--upstream",
      "files",
      "--scopes",
      "top",
      "--live",
      "--json",
    ]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.rules.map((x: { match: string }) => x.match)).toEqual(["*"]);
    expect(out.items.map((i: { name: string }) => i.name)).toContain("env");
  }, 60_000);

  it("asks for a name when there are several upstreams, and refuses an unknown one", async () => {
    const none = await mcpgate(["policy", "explain", "--config", config, "--scopes", "a"]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/several upstreams: name one with --upstream NAME/);
    const bad = await mcpgate([
      "policy",
      "explain",
      "--config",
      config,
      "--upstream",
      "nope",
      "--scopes",
      "a",
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/no upstream named "nope"/);
  }, 60_000);
});
