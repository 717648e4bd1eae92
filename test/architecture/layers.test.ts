import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * DESIGN.md §3: layers bottom to top, each importing only from layers below it; folders of one
 * layer do not import each other; core/authn/authz/mcp/gate import no framework, driver or gateway.
 */
const SRC = resolve(import.meta.dirname, "../../src");
const LAYER: Record<string, number> = {
  core: 0,
  stores: 1,
  authn: 2,
  authz: 2,
  mcp: 2,
  observe: 2,
  gate: 3,
  // Telling upstreams who calls: signs with stores' keys, exchanges tokens with authn's HTTP client.
  identity: 3,
  http: 4,
  probe: 4,
  // The gateway's own authorization server (DESIGN.md §9): beside http/probe, below the assembly.
  authserver: 4,
  sdk: 4,
  // mcpgate/upstream: the assertion verifier an SDK server behind the gateway runs.
  upstream: 4,
  gateway: 5,
  config: 5,
  cli: 6,
  index: 7,
};
const NEUTRAL = new Set(["core", "authn", "authz", "mcp", "gate", "identity"]);
const FORBIDDEN_IN_NEUTRAL = [
  /^express$/,
  /^@modelcontextprotocol\//,
  /^better-sqlite3$/,
  /^pg$/,
  /^ioredis$/,
  /^redis$/,
  /^undici$/,
];
// undici is allowed where an authn verifier must fetch (JWKS, introspection): it is an HTTP client, not a framework.
const ALLOWED_EXCEPTIONS: Record<string, RegExp[]> = { authn: [/^undici$/] };
const DRIVERS = [/^better-sqlite3$/, /^pg$/, /^ioredis$/, /^redis$/];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

function layerOf(file: string): string {
  const rel = relative(SRC, file);
  const top = rel.split(/[\\/]/)[0]!;
  const name = top.replace(/\.(ts|js)$/, "");
  // DESIGN.md §3: "config.ts sits with gateway".
  return name === "config" ? "gateway" : name;
}

function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["']([^"']+)["']/g))
    out.push(m[1]!);
  for (const m of text.matchAll(/import\(\s*["']([^"']+)["']\s*\)/g)) out.push(m[1]!);
  return out;
}

const all = files(SRC);

describe("layering (DESIGN.md §3)", () => {
  it("knows the layer of every source folder", () => {
    for (const f of all) expect(LAYER[layerOf(f)], relative(SRC, f)).toBeDefined();
  });

  it("has no import running back up, and no import across folders of one layer", () => {
    const violations: string[] = [];
    for (const f of all) {
      const from = layerOf(f);
      for (const spec of importsOf(readFileSync(f, "utf8"))) {
        if (!spec.startsWith(".")) continue;
        const target = layerOf(resolve(f, "..", spec));
        if (target === from) continue;
        const a = LAYER[from]!;
        const b = LAYER[target];
        if (b === undefined || b > a || (b === a && from !== target))
          violations.push(`${relative(SRC, f)} → ${spec}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it("keeps core, authn, authz, mcp and gate free of frameworks, drivers and the gateway", () => {
    const violations: string[] = [];
    for (const f of all) {
      const layer = layerOf(f);
      if (!NEUTRAL.has(layer)) continue;
      for (const spec of importsOf(readFileSync(f, "utf8"))) {
        if (spec.startsWith(".")) continue;
        const allowed = ALLOWED_EXCEPTIONS[layer]?.some((re) => re.test(spec));
        if (!allowed && FORBIDDEN_IN_NEUTRAL.some((re) => re.test(spec)))
          violations.push(`${relative(SRC, f)} → ${spec}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it("loads database drivers only from the store that uses them", () => {
    const violations: string[] = [];
    for (const f of all) {
      for (const spec of importsOf(readFileSync(f, "utf8"))) {
        if (DRIVERS.some((re) => re.test(spec)) && layerOf(f) !== "stores")
          violations.push(`${relative(SRC, f)} → ${spec}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it("detects a violation when one exists (the checker itself can fail)", () => {
    const fake = importsOf(
      'import { createGate } from "../gate/gate.js";\nconst x = await import("../gateway/server.js");',
    );
    expect(fake).toEqual(["../gate/gate.js", "../gateway/server.js"]);
  });
});
