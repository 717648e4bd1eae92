import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { compilePolicy } from "../../src/authz/policy.js";
import { explainPolicy, formatExplanation } from "../../src/cli/policy.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

const ROOT = resolve(import.meta.dirname, "../..");

function mcpgate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", ...args],
      { cwd: ROOT, env: { ...process.env, MCPGATE_STORE: "" }, timeout: 30_000 },
      (err, stdout, stderr) =>
        done({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

const POLICY = {
  tools: [
    { match: "delete_*", scopes: ["admin"] },
    { match: "*", scopes: ["tools:call"] },
  ],
  prompts: [{ match: "summarize", scopes: ["prompts:use", "tools:*"], mode: "any" as const }],
};

describe("explainPolicy", () => {
  it("gives each rule's outcome and each item's deciding rule, agreeing with the gate", () => {
    const policy = compilePolicy(POLICY);
    const e = explainPolicy(
      policy,
      ["tools:call"],
      [
        { kind: "tools", name: "delete_note" },
        { kind: "tools", name: "echo" },
        { kind: "resources", name: "notes://all" },
        { kind: "prompts", name: "summarize" },
      ],
    );
    expect(e.rules.map((r) => [r.kind, r.index, r.allowed, r.missing])).toEqual([
      ["tools", 0, false, ["admin"]],
      ["tools", 1, true, []],
      ["prompts", 0, false, ["prompts:use", "tools:*"]],
    ]);
    expect(e.items).toEqual([
      {
        kind: "tools",
        name: "delete_note",
        visible: false,
        callable: false,
        rule: { index: 0, match: "delete_*" },
        missing: ["admin"],
      },
      {
        kind: "tools",
        name: "echo",
        visible: true,
        callable: true,
        rule: { index: 1, match: "*" },
        missing: [],
      },
      { kind: "resources", name: "notes://all", visible: false, callable: false, rule: null, missing: [] },
      {
        kind: "prompts",
        name: "summarize",
        visible: false,
        callable: false,
        rule: { index: 0, match: "summarize" },
        missing: ["prompts:use", "tools:*"],
      },
    ]);
    for (const item of e.items!) {
      expect(item.visible).toBe(
        policy.isVisible(
          { principal: "x", kind: "api_key", subject: "x", scopes: ["tools:call"] },
          item.kind,
          item.name,
        ),
      );
    }
    const text = formatExplanation(e);
    expect(text).toContain("resources[default]");
    expect(text).toContain("(no rules)");
    expect(text).toMatch(/delete_note\s+no\s+no\s+tools\[0\] delete_\* \(missing: admin\)/);
    expect(text).toContain("1 of 4 items visible");
  });

  it("says so when no policy is configured", () => {
    expect(formatExplanation(explainPolicy(undefined, []))).toContain("No policy is configured");
  });
});

describe("mcpgate policy explain", () => {
  let dir: string;
  let config: string;
  let upstream: RecordingUpstream;
  let keyId: string;
  let fullKey: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-explain-"));
    const store = `sqlite:${join(dir, "keys.db")}`;
    const s = await openKeyStore(store);
    const issued = await issueApiKey(s, { name: "ci-bot", scopes: ["tools:call", "admin"] });
    keyId = issued.record.id;
    fullKey = issued.key;
    await s.close();
    upstream = await startRecordingUpstream();
    config = join(dir, "mcpgate.json");
    writeFileSync(
      config,
      JSON.stringify({ upstream: { url: upstream.url }, auth: { apiKeys: { store } }, policy: POLICY }),
    );
  });

  afterAll(async () => {
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("prints the rules' outcomes for given scopes as a table", async () => {
    const r = await mcpgate(["policy", "explain", "--config", config, "--scopes", "tools:call"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/tools\[0\]\s+delete_\*\s+admin\s+deny \(missing: admin\)/);
    expect(r.stdout).toMatch(/tools\[1\]\s+\*\s+tools:call\s+allow/);
  });

  it("reads a stored key's scopes and lists the live upstream's items with --live --json", async () => {
    const r = await mcpgate(["policy", "explain", "--config", config, "--key", keyId, "--live", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.caller).toEqual({
      scopes: ["tools:call", "admin"],
      key: { id: keyId, name: "ci-bot", status: "active" },
    });
    const tools = out.items.filter((i: { kind: string }) => i.kind === "tools");
    expect(tools.map((t: { name: string }) => t.name).sort()).toEqual([
      "add",
      "count",
      "delete_note",
      "echo",
    ]);
    expect(tools.every((t: { visible: boolean }) => t.visible)).toBe(true);
    const resources = out.items.filter((i: { kind: string }) => i.kind === "resources");
    expect(resources).toEqual([
      { kind: "resources", name: "notes://all", visible: false, callable: false, rule: null, missing: [] },
    ]);
    expect(r.stdout).not.toContain(fullKey.slice(5));
  });

  it("exits 2 with one line for a usage error", async () => {
    const both = await mcpgate(["policy", "explain", "--config", config]);
    expect(both.code).toBe(2);
    expect(both.stderr.trim().split("\n")).toHaveLength(1);
    const unknown = await mcpgate(["policy", "explain", "--config", config, "--key", "nope1234"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("no key with id nope1234");
  });
});
