import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfigFile, validateConfig } from "../../src/config.js";
import { McpGateError } from "../../src/core/errors.js";

/** Run `fn`; it may return, or throw only McpGateError ERR_CONFIG_INVALID. */
function onlyConfigErrors(fn: () => unknown): "ok" | "invalid" {
  try {
    fn();
    return "ok";
  } catch (err) {
    if (!(err instanceof McpGateError) || err.code !== "ERR_CONFIG_INVALID") {
      throw new Error(`unexpected error: ${(err as Error)?.name} ${(err as Error)?.message}`, { cause: err });
    }
    return "invalid";
  }
}

/** `${NAME}` (built so the linter does not take it for a template mistake). */
const ENV_REF = (name: string) => "$" + `{${name}}`;

const SECTIONS = [
  "listen",
  "publicUrl",
  "mcpPath",
  "upstream",
  "auth",
  "state",
  "sessions",
  "policy",
  "rateLimit",
  "guard",
  "alerts",
  "metrics",
  "logging",
  "origins",
  "limits",
];
const FIELD_NAMES = [
  "host",
  "port",
  "url",
  "command",
  "headers",
  "timeout",
  "staticKey",
  "apiKeys",
  "jwt",
  "issuers",
  "issuer",
  "audience",
  "jwksUri",
  "algorithms",
  "redis",
  "idleTtl",
  "max",
  "default",
  "tools",
  "match",
  "scopes",
  "limit",
  "window",
  "perPrincipal",
  "failures",
  "level",
  "maxBody",
  "headersTimeout",
  "requestTimeout",
  "env",
  "store",
];
/** Leaves a config might hold, including the awkward ones. */
const leaf = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom(
    "10s",
    "500ms",
    "90d",
    "-1s",
    "1e9d",
    "NaN",
    "http://127.0.0.1:1/mcp",
    ENV_REF("UNSET_VAR"),
    ENV_REF("HOME"),
  ),
  fc.constantFrom(
    "https://a.example/x",
    "redis://127.0.0.1:6379",
    "deny",
    "allow",
    "info",
    "*",
    "tools:call",
  ),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
);
/** Objects built from the schema's own field names, so the fuzz reaches deep into the schema. */
const { tree } = fc.letrec((tie) => ({
  tree: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    fc.array(tie("tree"), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom(...FIELD_NAMES), tie("tree"), { maxKeys: 4 }),
  ),
}));
const configLike = fc.dictionary(fc.constantFrom(...SECTIONS), tree, { maxKeys: 5 });

const dir = mkdtempSync(join(tmpdir(), "mcpgate-fuzz-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the configuration loader under fuzzing", () => {
  it("validateConfig throws nothing but ERR_CONFIG_INVALID for arbitrary values", () => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 4 }), (raw) => {
        onlyConfigErrors(() => validateConfig(raw, { HOME: "/home/x" }));
      }),
      { numRuns: 500 },
    );
  });

  it("validateConfig throws nothing but ERR_CONFIG_INVALID for config-shaped objects", () => {
    let valid = 0;
    fc.assert(
      fc.property(configLike, (raw) => {
        if (onlyConfigErrors(() => validateConfig(raw, { HOME: "/home/x" })) === "ok") valid++;
      }),
      { numRuns: 1000 },
    );
    // The generator must reach the accepting side too, or the property says little.
    expect(valid).toBeGreaterThan(0);
  });

  it("a config it accepts is frozen and names only known sections", () => {
    fc.assert(
      fc.property(configLike, (raw) => {
        let cfg: ReturnType<typeof validateConfig>;
        try {
          cfg = validateConfig(raw, {});
        } catch {
          return;
        }
        expect(Object.isFrozen(cfg)).toBe(true);
        for (const k of Object.keys(cfg)) expect(SECTIONS).toContain(k);
      }),
      { numRuns: 300 },
    );
  });

  it("loadConfigFile throws nothing but ERR_CONFIG_INVALID for arbitrary YAML and JSON text", () => {
    let n = 0;
    const text = fc.oneof(
      fc.string({ maxLength: 200 }),
      configLike.map((c) => JSON.stringify(c)),
      fc.string({
        unit: fc.constantFrom(...[..."a: -[]{}&*!|>'\"#%@`\n :?,0".split(""), "$"]),
        maxLength: 120,
      }),
      fc.constantFrom("a: &a [*a]", "x: !!binary AAAA", "? [a]\n: b", "%YAML 1.2\n---\n", "<<: *x"),
    );
    fc.assert(
      fc.property(text, fc.constantFrom(".yaml", ".json"), (t, ext) => {
        const file = join(dir, `c${n++}${ext}`);
        writeFileSync(file, t);
        onlyConfigErrors(() => loadConfigFile(file, {}));
      }),
      { numRuns: 400 },
    );
  });
});
