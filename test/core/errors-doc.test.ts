import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, McpGateError } from "../../src/core/errors.js";

const doc = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");

function documentedCodes(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const m of doc.matchAll(/^\| `(ERR_[A-Z0-9_]+)` \| (.+?) \|$/gm)) rows.set(m[1]!, m[2]!);
  return rows;
}

describe("docs/errors.md", () => {
  it("documents every code the code defines, with the same text", () => {
    const documented = documentedCodes();
    for (const [code, text] of Object.entries(ERROR_CODES)) {
      expect(documented.get(code), code).toBe(text);
    }
  });

  it("documents no code the code does not define", () => {
    for (const code of documentedCodes().keys()) expect(Object.hasOwn(ERROR_CODES, code), code).toBe(true);
  });

  it("keeps the code and the cause on the error", () => {
    const cause = new Error("boom");
    const err = new McpGateError("ERR_STORE_UNAVAILABLE", "store down", { cause });
    expect(err.code).toBe("ERR_STORE_UNAVAILABLE");
    expect(err.cause).toBe(cause);
    expect(err).toBeInstanceOf(Error);
  });
});
