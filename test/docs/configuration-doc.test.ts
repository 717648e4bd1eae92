import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configSchema } from "../../src/config.js";

const doc = readFileSync(new URL("../../docs/configuration.md", import.meta.url), "utf8");

/** Field paths of a zod object schema, descending through optional/default/refine wrappers. */
function fieldPaths(schema: unknown, prefix = ""): string[] {
  let s = schema as {
    def?: {
      type?: string;
      innerType?: unknown;
      shape?: Record<string, unknown>;
      element?: unknown;
      in?: unknown;
    };
    shape?: Record<string, unknown>;
  };
  for (
    let i = 0;
    i < 10 && s?.def && ["optional", "default", "nullable", "pipe", "prefault"].includes(s.def.type ?? "");
    i++
  ) {
    s = (s.def.innerType ?? s.def.in) as typeof s;
  }
  const shape = s?.shape ?? s?.def?.shape;
  if (!shape) return [];
  return Object.entries(shape).flatMap(([key, child]) => {
    const path = prefix ? `${prefix}.${key}` : key;
    const nested = fieldPaths(child, path);
    // Only leaves are documented field by field; objects are documented through their leaves.
    return nested.length ? nested : [path];
  });
}

describe("docs/configuration.md", () => {
  const paths = fieldPaths(configSchema);

  it("finds the schema's fields (the walker itself works)", () => {
    expect(paths).toContain("listen.port");
    expect(paths).toContain("auth.apiKeys.store");
    expect(paths.length).toBeGreaterThan(40);
  });

  it("documents every configuration field", () => {
    const missing = paths.filter((p) => {
      const leaf = p.split(".").slice(-2).join(".");
      return (
        !doc.includes(`\`${p}\``) &&
        !doc.includes(`\`${leaf}\``) &&
        !doc.includes(`\`${p.split(".").at(-1)}\``)
      );
    });
    expect(missing).toEqual([]);
  });
});
