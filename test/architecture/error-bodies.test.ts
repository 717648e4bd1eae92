import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * Issue 13: every refusal and upstream failure on the request path is rendered by
 * core/challenge.ts — no hand-written error body anywhere else (there were 39 `writeHead` calls
 * writing them by hand, a literal -31004, two codes for "session missing").
 */
const SRC = resolve(import.meta.dirname, "../../src");
const REQUEST_PATH = ["http", "gate", "gateway", "mcp", "observe"];
// The one exception: an answer the gateway sends to a stdio child (upstream), not to a client.
const ALLOWED = new Set(["gateway/stdio/pool.ts"]);
const HAND_WRITTEN = [
  /error:\s*\{\s*code:/, // a JSON-RPC error object built in place
  /code:\s*-3\d{4}/, // a literal JSON-RPC code
  /["'`]\{\\?"error\\?"/, // a JSON error body written as a string
];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

function offenders(text: string): string[] {
  return text
    .split("\n")
    .map((line, i) => ({ line, n: i + 1 }))
    .filter(({ line }) => !/^\s*(\*|\/\/)/.test(line) && HAND_WRITTEN.some((re) => re.test(line)))
    .map(({ line, n }) => `${n}: ${line.trim()}`);
}

describe("error bodies on the request path", () => {
  it("are all rendered by core/challenge.ts", () => {
    const found: string[] = [];
    for (const dir of REQUEST_PATH) {
      for (const f of files(join(SRC, dir))) {
        const rel = relative(SRC, f);
        if (ALLOWED.has(rel)) continue;
        for (const o of offenders(readFileSync(f, "utf8"))) found.push(`${rel}:${o}`);
      }
    }
    expect(found).toEqual([]);
  });

  it("detects a hand-written body (the check itself can fail)", () => {
    expect(
      offenders('res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -31004, message: "x" } }));'),
    ).toHaveLength(1);
    expect(offenders(`res.end('{"error":"internal error"}');`)).toHaveLength(1);
    expect(offenders("// error: { code: -31004 } in a comment")).toEqual([]);
  });
});
