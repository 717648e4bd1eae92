import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The root entry `mcpgate` is the gate, the verifiers, the core types and the store interfaces:
 * importing it must not load the gateway's HTTP client, the logger, metrics, the config schema or
 * process spawning (a library user embedding the gate pays for none of them). Checked in a fresh
 * Node process that records every module it resolves.
 */
const ROOT = resolve(import.meta.dirname, "../..");
const HEAVY = ["undici", "pino", "prom-client", "zod", "yaml", "child_process"];

function modulesLoadedBy(entry: string): string[] {
  const hooks = resolve(import.meta.dirname, "fixtures/record-imports.mjs");
  // Every import specifier resolved after the hook is registered (our modules are ESM, so a
  // `node:child_process` import passes through it too).
  const script = [
    'import { register } from "node:module";',
    'import { pathToFileURL } from "node:url";',
    `register(pathToFileURL(${JSON.stringify(hooks)}));`,
    `await import(${JSON.stringify(entry)});`,
  ].join("\n");
  const out = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: ROOT,
    encoding: "utf8",
    stdio: ["ignore", "ignore", "inherit", "pipe"],
  });
  expect(out.status).toBe(0);
  return String(out.output[3]).split("\n").filter(Boolean);
}

const heavyIn = (mods: string[]) =>
  mods.filter((m) => HEAVY.some((h) => m === h || m === `node:${h}` || m.startsWith(`${h}/`)));

describe("importing the root entry", () => {
  it("loads no undici, pino, prom-client, zod, yaml or child_process", () => {
    const mods = modulesLoadedBy(resolve(ROOT, "src/index.ts"));
    expect(mods.length).toBeGreaterThan(5);
    expect(heavyIn(mods)).toEqual([]);
  });

  it("sees them when an entry does load them (the check itself can fail)", () => {
    const mods = modulesLoadedBy(resolve(ROOT, "src/gateway/index.ts"));
    expect(heavyIn(mods)).toEqual(
      expect.arrayContaining(["undici", "pino", "prom-client", "zod", "node:child_process"]),
    );
  });
});
