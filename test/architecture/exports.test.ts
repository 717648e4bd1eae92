import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * DESIGN.md §3 "Public entry points" and STYLE.md rule 2: every `exports` subpath of package.json
 * is built from a source file under src/ (tsc maps src/x.ts to dist/x.js), tsconfig.json `paths`
 * resolve the same names to the same files (so tests and examples import what users import), and
 * each entry point has named exports only: no `export *`, no default export.
 */
const ROOT = resolve(import.meta.dirname, "../..");
const readJson = (file: string) => JSON.parse(readFileSync(resolve(ROOT, file), "utf8"));
const pkg = readJson("package.json") as {
  name: string;
  bin?: Record<string, string>;
  exports: Record<string, { types?: string; import?: string }>;
};
const tsconfig = readJson("tsconfig.json") as { compilerOptions: { paths?: Record<string, string[]> } };
const buildConfig = readJson("tsconfig.build.json") as {
  compilerOptions: { rootDir?: string; outDir?: string };
};

/** `./dist/a/b.js` or `./dist/a/b.d.ts` → `./src/a/b.ts`; anything else → undefined. */
function sourceOf(target: string | undefined): string | undefined {
  const m = /^\.\/dist\/(.+?)(?:\.d\.ts|\.js)$/.exec(target ?? "");
  return m ? `./src/${m[1]}.ts` : undefined;
}

/** `export *` and default exports in a module's text (comments removed first). */
function exportProblems(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
  const problems: string[] = [];
  if (/^\s*export\s*\*/m.test(code)) problems.push("export *");
  if (/^\s*export\s+default\b/m.test(code)) problems.push("export default");
  if (/\bas\s+default\b/.test(code)) problems.push("export { … as default }");
  return problems;
}

const entries = Object.entries(pkg.exports);

describe("package entry points (package.json exports)", () => {
  it("lists the entry points DESIGN.md names", () => {
    expect(Object.keys(pkg.exports).sort()).toEqual(
      [
        ".",
        "./express",
        "./gateway",
        "./node",
        "./observe",
        "./probe",
        "./sdk",
        "./stores/postgres",
        "./stores/redis",
        "./stores/sqlite",
        "./upstream",
      ].sort(),
    );
  });

  it("builds dist/ from src/ with the directory layout kept (tsconfig.build.json)", () => {
    expect(buildConfig.compilerOptions.rootDir).toBe("src");
    expect(buildConfig.compilerOptions.outDir).toBe("dist");
  });

  it.each(entries)(
    "%s: import and types point at dist/ files built from one existing source file",
    (_, t) => {
      const fromImport = sourceOf(t.import);
      expect(fromImport, `import target ${t.import}`).toBeDefined();
      expect(sourceOf(t.types), `types target ${t.types}`).toBe(fromImport);
      expect(t.import?.endsWith(".js") && t.types?.endsWith(".d.ts")).toBe(true);
      expect(existsSync(resolve(ROOT, fromImport!)), `${fromImport} exists`).toBe(true);
    },
  );

  it("points the mcpgate command at a built source file", () => {
    for (const target of Object.values(pkg.bin ?? {})) {
      const src = sourceOf(`./${target.replace(/^\.\//, "")}`);
      expect(src && existsSync(resolve(ROOT, src)), `${target}`).toBe(true);
    }
  });

  it("has tsconfig.json paths for exactly the exported names, resolving to the same source files", () => {
    const expected = Object.fromEntries(
      entries.map(([sub, t]) => [
        sub === "." ? pkg.name : `${pkg.name}/${sub.slice(2)}`,
        [sourceOf(t.import)],
      ]),
    );
    expect(tsconfig.compilerOptions.paths).toEqual(expected);
  });

  it.each(entries)("%s: has named exports only, in its text and at run time", async (_, t) => {
    const src = resolve(ROOT, sourceOf(t.import)!);
    expect(exportProblems(readFileSync(src, "utf8"))).toEqual([]);
    const mod = (await import(src)) as Record<string, unknown>;
    expect(Object.keys(mod)).not.toContain("default");
    expect(Object.keys(mod).length).toBeGreaterThan(0);
  });

  it("detects export * and default exports (the checker itself can fail)", () => {
    expect(exportProblems('export * from "./a.js";')).toEqual(["export *"]);
    expect(exportProblems("export default function f() {}")).toEqual(["export default"]);
    expect(exportProblems("export { f as default };")).toEqual(["export { … as default }"]);
    expect(
      exportProblems('// export * from "./a.js"\n/** export default x */\nexport { a } from "./a.js";'),
    ).toEqual([]);
    expect(sourceOf("./dist/stores/redis.js")).toBe("./src/stores/redis.ts");
    expect(sourceOf("./lib/redis.js")).toBeUndefined();
  });
});

describe("what each store entry point offers", () => {
  it("exports the PostgreSQL audit sink beside the key store, and the Redis guard beside the state store", async () => {
    const postgres = await import("../../src/stores/postgres.js");
    expect(typeof postgres.createPostgresKeyStore).toBe("function");
    expect(typeof postgres.createPostgresAuditSink).toBe("function");
    const redis = await import("../../src/stores/redis.js");
    expect(typeof redis.createRedisStateStore).toBe("function");
    expect(typeof redis.createRedisGuardStore).toBe("function");
    expect(typeof redis.createRedisKeyEvents).toBe("function");
    const sqlite = await import("../../src/stores/sqlite.js");
    expect(typeof sqlite.createSqliteKeyStore).toBe("function");
  });
});
