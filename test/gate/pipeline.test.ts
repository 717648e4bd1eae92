import { describe, expect, it } from "vitest";
import { createStaticKeyVerifier } from "../../src/authn/static-key.js";
import type { CredentialVerifier } from "../../src/authn/verifier.js";
import type { Authorizer } from "../../src/core/contracts.js";
import { type Authenticated, createGate, type GateOptions } from "../../src/gate/gate.js";
import { createMemoryStateStore } from "../../src/stores/memory-state.js";

/**
 * The gate's pipeline, step by step (DESIGN.md §2, docs/design.md §9.1): authentication on the
 * headers alone, then the body; a frozen Admission and ResponsePlan; stream lifetime.
 */
const KEY = "gate-pipeline-test-key-0123456789";
const PUBLIC = "http://127.0.0.1/mcp";
const auth = { authorization: `Bearer ${KEY}` };
const json = { ...auth, "content-type": "application/json" };
const hideAdmin: Authorizer = {
  authorize: (_i, m) =>
    m.name === "secret_admin" || m.method === "notifications/roots/list_changed"
      ? { allow: false, scopes: [], reason: "refused" }
      : { allow: true },
  filtersLists: () => true,
  isVisible: (_i, _k, name) => name !== "secret_admin",
  onDenied: () => "tool-error",
  scopesSupported: () => [],
};

function spyVerifier(): CredentialVerifier & { calls: number } {
  const inner = createStaticKeyVerifier({ key: KEY });
  const v = {
    kind: inner.kind,
    calls: 0,
    accepts: (t: string) => inner.accepts(t),
    verify: (t: string) => {
      v.calls++;
      return inner.verify(t);
    },
  };
  return v;
}
const gateWith = (extra: Partial<GateOptions> = {}) =>
  createGate({ verifiers: [createStaticKeyVerifier({ key: KEY })], publicUrl: PUBLIC, ...extra });
const call = (id: number, name: string) => ({
  jsonrpc: "2.0",
  id,
  method: "tools/call",
  params: { name, arguments: {} },
});

describe("step 1–3: authenticate, on the headers alone", () => {
  it("refuses a foreign Origin before looking at the credential", async () => {
    const v = spyVerifier();
    const r = await createGate({ verifiers: [v], publicUrl: PUBLIC }).authenticate({
      method: "POST",
      headers: { ...auth, origin: "https://evil.example" },
    });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.response.status).toBe(403);
    expect(v.calls).toBe(0);
  });

  it("refuses other HTTP methods with 405 and Allow", async () => {
    const r = await gateWith().authenticate({ method: "PUT", headers: auth });
    expect(!r.ok && r.response.status).toBe(405);
    expect(!r.ok && r.response.headers.allow).toBe("GET, POST, DELETE");
  });

  it("fails closed (500) with no verifier", async () => {
    const r = await createGate({ verifiers: [], publicUrl: PUBLIC }).authenticate({
      method: "POST",
      headers: auth,
    });
    expect(!r.ok && r.response.status).toBe(500);
  });

  it("answers 401 for a missing or wrong credential, with no body given at all", async () => {
    const g = gateWith();
    expect((await g.authenticate({ method: "POST", headers: {} })).ok).toBe(false);
    const wrong = await g.authenticate({
      method: "POST",
      headers: { authorization: "Bearer nope-0123456789abcdefghijkl" },
    });
    expect(!wrong.ok && wrong.response.status).toBe(401);
  });

  it("gives a frozen Authenticated for an accepted credential", async () => {
    const r = await gateWith().authenticate({ method: "post", headers: auth, requestId: "r1" });
    expect(r.ok).toBe(true);
    const a = (r as { auth: Authenticated }).auth;
    expect(a).toMatchObject({ requestId: "r1", method: "POST", token: KEY });
    expect(Object.isFrozen(a)).toBe(true);
  });
});

describe("step 4–9: admit the authenticated request with its body", () => {
  async function admit(
    body: unknown,
    headers: Record<string, string> = json,
    extra: Partial<GateOptions> = {},
  ) {
    const g = gateWith(extra);
    const a = await g.authenticate({ method: "POST", headers });
    if (!a.ok) throw new Error("not authenticated");
    return g.admitAuthenticated(a.auth, {
      method: "POST",
      headers,
      bodyText: typeof body === "string" ? body : JSON.stringify(body),
    });
  }

  it("answers 400 -32700 to a body that is not JSON, 415 to another media type", async () => {
    const bad = await admit("{nope");
    expect(!bad.ok && [bad.response.status, JSON.parse(bad.response.body).error.code]).toEqual([400, -32700]);
    const media = await admit(call(1, "x"), { ...auth, "content-type": "text/plain" });
    expect(!media.ok && media.response.status).toBe(415);
  });

  it("refuses Mcp-Method that does not match the body (-32020)", async () => {
    const r = await admit(call(1, "echo"), {
      ...json,
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/list",
    });
    expect(!r.ok && JSON.parse(r.response.body).error.code).toBe(-32020);
  });

  it("returns a frozen Admission and a frozen plan: forward everything, filter lists", async () => {
    const r = await admit({ jsonrpc: "2.0", id: 1, method: "tools/list" }, json, { authorizer: hideAdmin });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(Object.isFrozen(r.admission)).toBe(true);
    expect(Object.isFrozen(r.admission.messages)).toBe(true);
    expect(Object.isFrozen(r.plan)).toBe(true);
    expect(Object.isFrozen(r.plan.forward)).toBe(true);
    expect(r.plan).toMatchObject({
      answer: "forward",
      forwardIsWhole: true,
      bindSession: false,
      expectsAnswers: true,
      era: "2025",
    });
    expect(r.plan.visible?.("tools", "secret_admin")).toBe(false);
    expect(() => {
      (r.admission as { era: string }).era = "2026";
    }).toThrow(TypeError);
  });

  it("says whether the upstream's answer carries messages: a request or a GET stream does, a notification or a DELETE does not", async () => {
    const plan = async (body: unknown) => {
      const r = await admit(body, json);
      return r.ok ? r.plan.expectsAnswers : undefined;
    };
    expect(await plan({ jsonrpc: "2.0", id: 1, method: "ping" })).toBe(true);
    expect(await plan({ jsonrpc: "2.0", method: "notifications/initialized" })).toBe(false);
    const g = gateWith({});
    const bodyless = async (method: "GET" | "DELETE") => {
      const headers = { ...json, accept: "text/event-stream" };
      const a = await g.authenticate({ method, headers });
      if (!a.ok) throw new Error("not authenticated");
      const r = await g.admitAuthenticated(a.auth, { method, headers });
      return r.ok ? r.plan.expectsAnswers : r.denial.kind;
    };
    expect(await bodyless("GET")).toBe(true);
    expect(await bodyless("DELETE")).toBe(false);
  });

  it("answers refused batch elements itself and forwards the rest", async () => {
    const r = await admit(
      [call(1, "echo"), call(2, "secret_admin")],
      { ...json, "mcp-protocol-version": "2025-03-26" },
      { authorizer: hideAdmin },
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.plan.answer).toBe("forward");
    expect(r.plan.forward.map((m) => m.id)).toEqual([1]);
    expect(r.plan.forwardIsWhole).toBe(false);
    expect(r.plan.localResponses).toEqual([
      { jsonrpc: "2.0", id: 2, result: { content: [{ type: "text", text: "refused" }], isError: true } },
    ]);
    // The admission keeps what the client sent; only the plan says what goes upstream.
    expect(r.admission.messages).toHaveLength(2);
  });

  it("answers locally when every request of a batch is refused", async () => {
    const r = await admit(
      [call(1, "secret_admin")],
      { ...json, "mcp-protocol-version": "2025-03-26" },
      { authorizer: hideAdmin },
    );
    expect(r.ok && r.plan.answer).toBe("local");
  });

  it("accepts (202, nothing forwarded) a notification the policy refuses", async () => {
    const r = await admit({ jsonrpc: "2.0", method: "notifications/roots/list_changed" }, json, {
      authorizer: hideAdmin,
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.plan.answer).toBe("accepted");
    expect(r.plan.forward).toEqual([]);
  });

  it("plans to bind the session an initialize may mint", async () => {
    const r = await admit({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } },
    });
    expect(r.ok && r.plan.bindSession).toBe(true);
  });

  it("requires a session id once sessions are required, and 404s another scope's session", async () => {
    const missing = await admit(call(1, "echo"), json, { requireSession: true });
    expect(!missing.ok && [missing.response.status, JSON.parse(missing.response.body).error.code]).toEqual([
      400, -31010,
    ]);

    const state = createMemoryStateStore();
    const a = gateWith({ state, sessionScope: "a" });
    const b = gateWith({ state, sessionScope: "b" });
    const admitted = await a.admit({
      method: "POST",
      headers: json,
      bodyText: JSON.stringify(call(1, "echo")),
    });
    if (!admitted.ok) throw new Error("refused");
    await a.onResponse(admitted.admission, { status: 200, method: "POST", sessionId: "s-1" });
    // onResponse binds only initialize answers: bind explicitly as the upstream's initialize would.
    await state.bindSession("a\u0000s-1", { principal: admitted.admission.identity.principal }, 60_000);
    const h = { ...json, "mcp-session-id": "s-1" };
    const onA = await a.admit({ method: "POST", headers: h, bodyText: JSON.stringify(call(2, "echo")) });
    const onB = await b.admit({ method: "POST", headers: h, bodyText: JSON.stringify(call(2, "echo")) });
    expect(onA.ok).toBe(true);
    expect(!onB.ok && onB.response.status).toBe(404);
  });
});

describe("watch: how long an admitted credential stays acceptable", () => {
  it("fires at the identity's expiresAt (epoch seconds), not before", async () => {
    const expiresAt = Math.floor(Date.now() / 1000) + 1;
    const g = createGate({
      verifiers: [
        {
          kind: "api_key",
          accepts: () => true,
          verify: async () => ({
            ok: true,
            identity: { principal: "key:x", kind: "api_key", subject: "x", scopes: [], expiresAt },
          }),
        },
      ],
      publicUrl: PUBLIC,
    });
    const a = await g.authenticate({ method: "GET", headers: auth });
    if (!a.ok) throw new Error("refused");
    const signal = g.watch(a.auth)!;
    expect(signal.aborted).toBe(false);
    await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt * 1000 - 5);
    expect(Date.now()).toBeLessThan(expiresAt * 1000 + 1_000);
  });

  it("combines watchers, which learn when the response is over", async () => {
    const revoked = new AbortController();
    const seen: AbortSignal[] = [];
    const g = gateWith({
      watchers: [
        (_a, until) => {
          seen.push(until);
          return revoked.signal;
        },
      ],
    });
    const a = await g.authenticate({ method: "GET", headers: auth });
    if (!a.ok) throw new Error("refused");
    const end = new AbortController();
    const signal = g.watch(a.auth, end.signal)!;
    expect(signal.aborted).toBe(false);
    revoked.abort();
    expect(signal.aborted).toBe(true);
    expect(seen[0]).toBe(end.signal);
  });

  it("never fires for a credential without expiry and no watcher", async () => {
    const g = gateWith();
    const a = await g.authenticate({ method: "GET", headers: auth });
    if (!a.ok) throw new Error("refused");
    expect(g.watch(a.auth)).toBeUndefined();
  });
});
