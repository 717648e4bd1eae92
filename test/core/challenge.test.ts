import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  type FailureDenial,
  JSONRPC,
  refusedMessageAnswer,
  renderDenial,
  renderRpcError,
} from "../../src/core/challenge.js";
import type { Denial, DenialKind } from "../../src/core/outcome.js";

/**
 * core/challenge.ts is the one place that maps outcomes to HTTP (DESIGN.md §2, issue 13): every
 * denial kind renders, every JSON-RPC code means one thing and is documented, header values are
 * escaped, and errors inside a stream carry the same code as the whole-response rendering.
 */
const doc = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");
const documented = new Map<string, { code: number; status: number }>();
for (const m of doc.matchAll(/^\| `(-\d+)` \| `([A-Z_]+)` \| (\d{3}) \|/gm))
  documented.set(m[2]!, { code: Number(m[1]), status: Number(m[3]) });

// A sample of every kind: adding a Denial kind without a sample here fails to compile.
const SAMPLES: { [K in DenialKind]: Extract<Denial, { kind: K }> } = {
  unauthenticated: { kind: "unauthenticated", reason: "invalid" },
  not_configured: { kind: "not_configured" },
  origin_forbidden: { kind: "origin_forbidden" },
  insufficient_scope: { kind: "insufficient_scope", scopes: ["admin"] },
  tool_denied: { kind: "tool_denied", id: 3, message: "needs admin" },
  probe_denied: { kind: "probe_denied", id: 4, method: "tools/call" },
  session_unknown: { kind: "session_unknown" },
  session_missing: { kind: "session_missing" },
  parse_error: { kind: "parse_error" },
  invalid_request: { kind: "invalid_request", message: "bad" },
  header_mismatch: { kind: "header_mismatch", message: "Mcp-Method" },
  unsupported_media_type: { kind: "unsupported_media_type" },
  method_not_allowed: { kind: "method_not_allowed", allow: ["POST"] },
  body_too_large: { kind: "body_too_large", limitBytes: 10 },
  rate_limited: { kind: "rate_limited", retryAfterSec: 3, limit: 10, windowSec: 60, policy: "p" },
  locked_out: { kind: "locked_out", retryAfterSec: 9 },
  session_limit: { kind: "session_limit", scope: "principal", retryAfterSec: 7 },
  in_flight_limit: { kind: "in_flight_limit", what: "requests", retryAfterSec: 1 },
  store_unavailable: { kind: "store_unavailable" },
  capacity: { kind: "capacity", message: "no slot" },
  upstream_unavailable: { kind: "upstream_unavailable" },
  upstream_timeout: { kind: "upstream_timeout" },
  upstream_credentials: { kind: "upstream_credentials" },
  upstream_malformed: { kind: "upstream_malformed" },
  identity_unavailable: { kind: "identity_unavailable" },
  credential_expired: { kind: "credential_expired" },
  client_too_slow: { kind: "client_too_slow" },
  not_acceptable: { kind: "not_acceptable", accept: "text/event-stream" },
  stream_conflict: { kind: "stream_conflict" },
  not_found: { kind: "not_found" },
  internal_error: { kind: "internal_error" },
};
const FAILURES: FailureDenial["kind"][] = [
  "store_unavailable",
  "capacity",
  "upstream_unavailable",
  "upstream_timeout",
  "upstream_credentials",
  "upstream_malformed",
  "identity_unavailable",
  "credential_expired",
  "client_too_slow",
];

describe("JSON-RPC error codes", () => {
  it("give each meaning its own code", () => {
    const values = Object.values(JSONRPC);
    expect(new Set(values).size).toBe(values.length);
  });

  it("are all documented in docs/errors.md, and the doc names no other", () => {
    for (const [name, code] of Object.entries(JSONRPC)) expect(documented.get(name)?.code, name).toBe(code);
    expect([...documented.keys()].sort()).toEqual(Object.keys(JSONRPC).sort());
  });

  it("stay outside the reserved range except the standard ones and HeaderMismatch", () => {
    const standard = new Set([-32700, -32600, -32601, -32602, -32020]);
    for (const code of Object.values(JSONRPC)) if (!standard.has(code)) expect(code > -32000).toBe(true);
  });
});

describe("renderDenial", () => {
  it.each(Object.values(SAMPLES))("renders $kind as JSON with no-store, and a documented code", (denial) => {
    const spec = renderDenial(denial as Denial, { realm: "mcp" });
    expect(spec.status).toBeGreaterThanOrEqual(200);
    expect(spec.headers["content-type"]).toBe("application/json");
    expect(spec.headers["cache-control"]).toBe("no-store");
    const body = JSON.parse(spec.body) as { error?: { code?: number } | string };
    if (typeof body.error === "object" && body.error?.code !== undefined) {
      const entry = [...documented.values()].find((d) => d.code === (body.error as { code: number }).code);
      expect(entry, `code ${body.error.code} documented`).toBeDefined();
    }
  });

  it("invites a retry (Retry-After) of a 503 only when the call did not run", () => {
    expect(renderDenial({ kind: "capacity", message: "full" }).headers["retry-after"]).toBe("1");
    const ran = renderDenial({ kind: "capacity", message: "full", ran: true });
    expect(ran.status).toBe(503);
    expect(ran.headers["retry-after"]).toBeUndefined();
    const dropped = renderDenial({ kind: "client_too_slow" });
    expect(dropped.status).toBe(503);
    expect(dropped.headers["retry-after"]).toBeUndefined();
  });

  it("answers an upstream's 401/403 as 502, never with a challenge", () => {
    const spec = renderDenial(
      { kind: "upstream_credentials" },
      { realm: "mcp", resourceMetadataUrl: "https://gw/prm" },
    );
    expect(spec.status).toBe(502);
    expect(spec.headers["www-authenticate"]).toBeUndefined();
    expect(JSON.parse(spec.body).error.code).toBe(JSONRPC.UPSTREAM_CREDENTIALS);
  });

  it("names the PRM only when OAuth is configured", () => {
    const apiKeys = renderDenial({ kind: "unauthenticated", reason: "missing" }, { realm: "mcp" });
    expect(apiKeys.headers["www-authenticate"]).toBe('Bearer realm="mcp"');
    const oauth = renderDenial(
      { kind: "unauthenticated", reason: "expired" },
      { realm: "mcp", resourceMetadataUrl: "https://gw/.well-known/oauth-protected-resource/mcp" },
    );
    expect(oauth.headers["www-authenticate"]).toContain(
      'resource_metadata="https://gw/.well-known/oauth-protected-resource/mcp"',
    );
    expect(oauth.headers["www-authenticate"]).toContain('error="invalid_token"');
  });

  it("escapes every header value (quotes, backslashes, control characters)", () => {
    const spec = renderDenial(
      { kind: "insufficient_scope", scopes: ['a"b'], description: 'x\\y"\r\nSet-Cookie: z=1' },
      { realm: 'r"m' },
    );
    const h = spec.headers["www-authenticate"]!;
    expect(h).not.toMatch(/[\r\n]/);
    expect(h).toContain('realm="r\\"m"');
    expect(h).toContain('scope="a\\"b"');
    expect(h).toContain('error_description="x\\\\y\\"Set-Cookie: z=1"');
  });

  it("puts Retry-After on 429 and 503", () => {
    expect(renderDenial(SAMPLES.rate_limited).headers["retry-after"]).toBe("3");
    expect(renderDenial(SAMPLES.locked_out).headers["retry-after"]).toBe("9");
    expect(renderDenial(SAMPLES.store_unavailable).headers["retry-after"]).toBe("1");
    expect(renderDenial(SAMPLES.session_limit)).toMatchObject({
      status: 429,
      headers: { "retry-after": "7" },
    });
    const full = renderDenial({ kind: "session_limit", scope: "global", retryAfterSec: 30 });
    expect(full).toMatchObject({ status: 503, headers: { "retry-after": "30" } });
  });
});

describe("renderRpcError (one request inside an open stream)", () => {
  it.each(FAILURES)("%s carries the same code and message as the whole-response rendering", (kind) => {
    const denial = SAMPLES[kind] as FailureDenial;
    const whole = JSON.parse(renderDenial(denial).body) as { error: unknown };
    const one = JSON.parse(renderRpcError(7, denial)) as { id: number; error: unknown };
    expect(one.id).toBe(7);
    expect(one.error).toEqual(whole.error);
    expect(
      documented.get(Object.entries(JSONRPC).find(([, c]) => c === (one.error as { code: number }).code)![0])!
        .status,
    ).toBe(renderDenial(denial).status);
  });
});

describe("refusedMessageAnswer (one refused element of a batch)", () => {
  it("gives a tool call an isError result and anything else -31001", () => {
    expect(refusedMessageAnswer(1, "tools/call", "no", "complete")).toEqual({
      jsonrpc: "2.0",
      id: 1,
      result: { content: [{ type: "text", text: "no" }], isError: true, resultType: "complete" },
    });
    expect(refusedMessageAnswer("a", "resources/read", "no")).toEqual({
      jsonrpc: "2.0",
      id: "a",
      error: { code: -31001, message: "no" },
    });
  });
});
