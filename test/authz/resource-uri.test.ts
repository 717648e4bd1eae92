import { describe, expect, it } from "vitest";
import { compilePolicy } from "../../src/authz/policy.js";
import {
  canonicalizeRequestNames,
  canonicalResourceUri,
  canonicalUriTemplate,
  MAX_URI_LENGTH,
} from "../../src/authz/resource-uri.js";
import type { Identity } from "../../src/core/identity.js";
import { parseJsonRpc } from "../../src/mcp/jsonrpc.js";
import { SECRET_SPELLINGS } from "./secret-spellings.js";

const id = (scopes: string[]): Identity => ({ principal: "key:t", kind: "api_key", subject: "t", scopes });

function messages(body: unknown) {
  const r = parseJsonRpc(JSON.stringify(body));
  if (!r.ok) throw new Error(r.message);
  return r.messages;
}

describe("canonicalResourceUri", () => {
  it("gives the secret's one canonical form for every spelling the upstream resolves to it", () => {
    for (const s of SECRET_SPELLINGS) {
      expect(canonicalResourceUri(s), JSON.stringify(s)).toEqual({
        ok: true,
        value: "file:///srv/secret/key.txt",
      });
    }
  });

  it("agrees with new URL() on the path the upstream resolves (besides decoding unreserved escapes)", () => {
    for (const s of SECRET_SPELLINGS.filter((x) => !/%(73|6B)/.test(x))) {
      expect(canonicalResourceUri(s)).toEqual({ ok: true, value: new URL(s).href });
    }
  });

  it("is idempotent and leaves canonical URIs unchanged", () => {
    for (const s of [
      "file:///srv/shared/readme.txt",
      "notes://all",
      "notes://Host/A",
      "a:b",
      "https://x.test/a?b=%2F#c",
    ]) {
      const c = canonicalResourceUri(s);
      expect(c).toEqual({ ok: true, value: s });
    }
  });

  it("upper-cases the hex of escapes it keeps, lower-cases scheme and special host", () => {
    expect(canonicalResourceUri("HTTPS://EXAMPLE.test/%c3%a9")).toEqual({
      ok: true,
      value: "https://example.test/%C3%A9",
    });
  });

  it("refuses what does not parse, is too long, or hides a path separator", () => {
    for (const bad of [
      "",
      "relative/path",
      "/srv/secret/key.txt",
      "http://[::1",
      `file:///${"a".repeat(MAX_URI_LENGTH)}`,
      "file:///srv/shared/..%2Fsecret%2Fkey.txt",
      "file:///srv/shared/..%2fsecret",
      "file:///srv/shared/..%5Csecret",
    ]) {
      expect(canonicalResourceUri(bad).ok, JSON.stringify(bad)).toBe(false);
    }
    // An encoded slash in the query is data, not a path separator.
    expect(canonicalResourceUri("https://x.test/a?path=a%2Fb").ok).toBe(true);
  });
});

describe("canonicalUriTemplate", () => {
  it("canonicalizes the literal parts and keeps each expression as written", () => {
    expect(canonicalUriTemplate("FILE://localhost/srv/docs/{name}")).toEqual({
      ok: true,
      value: "file:///srv/docs/{name}",
    });
    expect(canonicalUriTemplate("file:///srv/{dir}/x/{+rest}{?q}")).toEqual({
      ok: true,
      value: "file:///srv/{dir}/x/{+rest}{?q}",
    });
  });

  it("refuses unbalanced braces and expressions that canonicalization would move or drop", () => {
    expect(canonicalUriTemplate("file:///srv/{name").ok).toBe(false);
    expect(canonicalUriTemplate("file:///srv/name}").ok).toBe(false);
    expect(canonicalUriTemplate("file:///srv/{a}/../secret/{b}").ok).toBe(false);
  });
});

describe("canonicalizeRequestNames", () => {
  it("rewrites params.uri (and the inspected name) in place, and reports a change", () => {
    const ms = messages([
      { jsonrpc: "2.0", id: 1, method: "resources/read", params: { uri: "FILE:///srv/shared/./a.txt" } },
      { jsonrpc: "2.0", id: 2, method: "resources/subscribe", params: { uri: "file:///srv/shared/a.txt" } },
      {
        jsonrpc: "2.0",
        id: 3,
        method: "completion/complete",
        params: {
          ref: { type: "ref/resource", uri: "File:///srv/docs/{name}" },
          argument: { name: "name", value: "" },
        },
      },
    ]);
    expect(canonicalizeRequestNames(ms)).toEqual({ ok: true, changed: true });
    expect(ms[0]!.name).toBe("file:///srv/shared/a.txt");
    expect((ms[0]!.raw.params as { uri: string }).uri).toBe("file:///srv/shared/a.txt");
    expect((ms[2]!.raw.params as { ref: { uri: string } }).ref.uri).toBe("file:///srv/docs/{name}");
    expect(canonicalizeRequestNames(ms)).toEqual({ ok: true, changed: false });
  });

  it("refuses a URI that does not parse, naming the message", () => {
    const ms = messages({ jsonrpc: "2.0", id: 9, method: "resources/read", params: { uri: "not a uri" } });
    expect(canonicalizeRequestNames(ms)).toMatchObject({ ok: false, id: 9 });
  });
});

describe("the policy matches resources on the canonical form only", () => {
  const policy = compilePolicy({
    resources: [
      { match: "file:///srv/secret/*", scopes: ["admin"] },
      { match: "file:///srv/shared/*", scopes: ["files:read"] },
      { match: "file:///srv/docs/{name}", scopes: ["files:read"] },
    ],
  });
  const reader = id(["files:read"]);
  const read = (uri: string) =>
    messages({ jsonrpc: "2.0", id: 1, method: "resources/read", params: { uri } })[0]!;

  it("never lets a reader reach the secret, whatever the spelling, even before canonicalization", () => {
    for (const s of SECRET_SPELLINGS) {
      expect(policy.authorize(reader, read(s)).allow, JSON.stringify(s)).toBe(false);
      const m = read(s);
      if (canonicalizeRequestNames([m]).ok) expect(policy.authorize(reader, m).allow).toBe(false);
    }
    expect(policy.authorize(reader, read("file:///srv/shared/..%2Fsecret%2Fkey.txt")).allow).toBe(false);
  });

  it("refuses a non-canonical spelling of an allowed resource, and allows it once canonicalized", () => {
    const m = read("FILE://localhost/srv/shared/./readme.txt");
    const d = policy.authorize(reader, m);
    expect(d).toMatchObject({ allow: false, scopes: [] });
    canonicalizeRequestNames([m]);
    expect(policy.authorize(reader, m).allow).toBe(true);
  });

  it("filters listed resources and templates on their canonical form; unparseable ones are hidden", () => {
    expect(policy.isVisible(reader, "resources", "FILE:///srv/secret/key.txt")).toBe(false);
    expect(policy.isVisible(reader, "resources", "file:///srv/shared/readme.txt")).toBe(true);
    expect(policy.isVisible(reader, "resources", "File://localhost/srv/docs/{name}")).toBe(true);
    expect(policy.isVisible(reader, "resources", "garbage")).toBe(false);
  });

  it("refuses at start a resource rule that is not canonical, naming the canonical form", () => {
    expect(() => compilePolicy({ resources: [{ match: "FILE:///srv/*", scopes: [] }] })).toThrow(
      /file:\/\/\/srv\/a/,
    );
    expect(() => compilePolicy({ resources: [{ match: "file:///srv/x/../*", scopes: [] }] })).toThrow(
      /canonical/,
    );
    expect(() => compilePolicy({ resources: [{ match: "*secret*", scopes: [] }] })).not.toThrow();
  });
});
