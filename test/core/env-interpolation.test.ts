import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readConfigFile } from "../../src/core/config-file.js";
import { interpolateEnv } from "../../src/core/env-interpolation.js";
import { isMcpGateError } from "../../src/core/errors.js";

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

describe("interpolateEnv", () => {
  it("replaces every ${VAR} in nested strings and leaves other values alone", () => {
    const out = interpolateEnv(
      { a: "x-${A}-${B}", list: ["${A}", 3, true, null], deep: { n: 1, s: "$A {A} ${A}" } },
      { A: "1", B: "two" },
    );
    expect(out).toEqual({ a: "x-1-two", list: ["1", 3, true, null], deep: { n: 1, s: "$A {A} 1" } });
  });

  it("names the field and the variable, never a value, when a variable is unset", () => {
    const err = errorOf(() =>
      interpolateEnv({ upstream: { headers: ["${SECRET_X}"] } }, { OTHER: "s3cret" }),
    );
    expect(isMcpGateError(err, "ERR_CONFIG_INVALID")).toBe(true);
    expect((err as Error).message).toBe("upstream.headers[0]: environment variable SECRET_X is not set");
    expect((err as Error).message).not.toContain("s3cret");
  });

  it("refuses a value that contains itself instead of overflowing the stack", () => {
    const a: unknown[] = [];
    a.push(a);
    const err = errorOf(() => interpolateEnv({ a }, {}));
    expect(isMcpGateError(err, "ERR_CONFIG_INVALID")).toBe(true);
    expect((err as Error).message).toMatch(/a\[0\]: a value contains itself/);
  });

  it("refuses nesting deeper than 32 levels but accepts 32", () => {
    const nest = (n: number): unknown => (n === 0 ? "leaf" : { x: nest(n - 1) });
    expect(() => interpolateEnv(nest(31), {})).not.toThrow();
    expect(
      isMcpGateError(
        errorOf(() => interpolateEnv(nest(40), {})),
        "ERR_CONFIG_INVALID",
      ),
    ).toBe(true);
  });
});

describe("readConfigFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "mcpgate-config-file-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it("parses JSON by the .json extension and YAML otherwise, without interpolating", () => {
    expect(readConfigFile(write("a.json", '{"a":"${X}"}'), "config file")).toEqual({ a: "${X}" });
    expect(readConfigFile(write("a.yaml", "a: ${X}\nb: [1, 2]\n"), "config file")).toEqual({
      a: "${X}",
      b: [1, 2],
    });
  });

  it("reports a missing file as ERR_CONFIG_NOT_FOUND with the caller's wording", () => {
    const err = errorOf(() => readConfigFile(join(dir, "missing.yaml"), "monitor config"));
    expect(isMcpGateError(err, "ERR_CONFIG_NOT_FOUND")).toBe(true);
    expect((err as Error).message).toMatch(/^cannot read monitor config .*missing\.yaml: ENOENT$/);
  });

  it("reports unparsable text as ERR_CONFIG_INVALID naming the format", () => {
    const yaml = errorOf(() => readConfigFile(write("bad.yml", "a: [unclosed\n"), "config file"));
    expect(isMcpGateError(yaml, "ERR_CONFIG_INVALID")).toBe(true);
    expect((yaml as Error).message).toMatch(/bad\.yml: not valid YAML: /);
    const json = errorOf(() => readConfigFile(write("bad.json", "{"), "config file"));
    expect((json as Error).message).toMatch(/bad\.json: not valid JSON: /);
  });
});
