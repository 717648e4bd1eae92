import { decodeJwt } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import type { CredentialVerifier } from "../../src/authn/verifier.js";
import type { AuditEvent } from "../../src/core/audit-event.js";
import type { Identity } from "../../src/core/identity.js";
import type { Mount } from "../../src/gateway/server.js";
import { createAssertionSigner } from "../../src/identity/assertion-signer.js";
import { createUpstreamIdentity } from "../../src/identity/upstream-identity.js";
import { createMemorySigningKeyStore } from "../../src/stores/signing-keys.js";
import { rawPost, startStdioGateway, type TestGateway } from "./stdio-helpers.js";

/**
 * A stdio session's child is told its caller's identity once, when it is spawned (MCPGATE_IDENTITY,
 * MCPGATE_SUBJECT, MCPGATE_SCOPES). The gate binds the session to the caller's principal only, so
 * another credential of the same principal with narrower scopes (or another client or tenant) passes
 * the gate; the stdio upstream refuses it, before anything reaches the child, with the answer the
 * gate gives to another principal on the session (404, -31003 "Session not found").
 */

/** A stored-key caller `key:<who>` with these scopes (and tenant). */
const caller = (who: string, scopes: string[], tenant?: string): Identity => ({
  principal: `key:${who}`,
  kind: "api_key",
  subject: who,
  displayPrefix: `k_${who}`,
  scopes,
  ...(tenant ? { tenant } : {}),
});

/** Credentials (test-only tokens): four of the principal `key:alice`, one of `key:bob`. */
const CREDS: Record<string, Identity> = {
  "alice-wide-token-0123456789": caller("alice", ["notes:read", "notes:write"]),
  "alice-narrow-token-0123456789": caller("alice", ["notes:read"]),
  // A refreshed token: the same identity, its scopes listed in another order.
  "alice-refreshed-token-012345": caller("alice", ["notes:write", "notes:read"]),
  "alice-tenant-token-0123456789": caller("alice", ["notes:read", "notes:write"], "other"),
  "bob-token-0123456789abcdef": caller("bob", ["notes:read", "notes:write"]),
};
const [WIDE, NARROW, REFRESHED, TENANT, BOB] = Object.keys(CREDS) as [string, string, string, string, string];

/** Maps each of {@link CREDS} to its caller (as test/helpers/callers.ts does for its two keys). */
const verifier: CredentialVerifier = {
  kind: "api_key",
  accepts: () => true,
  async verify(token) {
    const identity = CREDS[token];
    return identity ? { ok: true, identity } : { ok: false, reason: "invalid" };
  },
};

/**
 * The assertion mode's identity hook for a stdio mount, from real parts: a signer on a memory key
 * store, and `stdioEnv` called when a child starts (as gateway/assembly/upstreams.ts wires it).
 */
async function assertionHook(): Promise<NonNullable<Mount["identity"]>> {
  const keys = createMemorySigningKeyStore();
  await keys.init();
  const signer = createAssertionSigner({ keys, issuer: "http://127.0.0.1" });
  const hook = createUpstreamIdentity({
    upstream: "default",
    mode: "assertion",
    audience: "urn:mcpgate:upstream:default",
    signer,
  });
  return async (entry) => {
    const { identity, sessionId } = entry.admission;
    return { ok: true, spawnEnv: () => hook.stdioEnv(identity, sessionId, 60_000) };
  };
}

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

const INIT = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
};
const JSON_ONLY = { accept: "application/json", "mcp-protocol-version": "2025-06-18" };

/** Open a session with `token`; the headers its later requests carry. */
async function openSession(g: TestGateway, token: string): Promise<Record<string, string>> {
  const init = await rawPost(g.url, token, INIT, JSON_ONLY);
  expect(init.status).toBe(200);
  const sid = init.headers.get("mcp-session-id");
  expect(sid).toBeTruthy();
  const h = { ...JSON_ONLY, "mcp-session-id": sid! };
  const done = await rawPost(g.url, token, { jsonrpc: "2.0", method: "notifications/initialized" }, h);
  expect(done.status).toBe(202);
  return h;
}

/** A whole answer, for comparing two of them exactly. */
async function answerOf(res: Response) {
  return { status: res.status, contentType: res.headers.get("content-type"), body: await res.text() };
}

/** Call a tool of the tiny server on the session; its text, or the whole answer when not 200. */
async function tool(g: TestGateway, token: string, h: Record<string, string>, id: number, name: string) {
  const res = await rawPost(g.url, token, { jsonrpc: "2.0", id, method: "tools/call", params: { name } }, h);
  if (res.status !== 200) return answerOf(res);
  const body = (await res.json()) as { result: { content: Array<{ text: string }> } };
  return body.result.content[0]!.text;
}

/** The notification the tiny server counts (tool `heard`). */
const NOTE_X = { jsonrpc: "2.0", method: "notifications/x" };

/** What the child has received: notifications/x read, and `sleep` calls. */
async function childSaw(g: TestGateway, token: string, h: Record<string, string>, id: number) {
  const heard = Number(await tool(g, token, h, id, "heard"));
  const { sleeps } = JSON.parse((await tool(g, token, h, id + 1, "cancels")) as string) as {
    sleeps: unknown[];
  };
  return { heard, sleeps: sleeps.length };
}

describe("stdio sessions told an identity serve only that identity", () => {
  it("refuses a narrower credential of the same principal with the gate's answer to another principal, before the child hears it", async () => {
    const audits: AuditEvent[] = [];
    gw = await startStdioGateway({
      verifier,
      identity: await assertionHook(),
      observer: { audit: (e) => void audits.push(e) },
    });
    const h = await openSession(gw, WIDE);
    const pid = gw.upstream.sessionPid(h["mcp-session-id"]!);
    expect(pid).toBeDefined();

    // The child was told the wide identity at spawn.
    const env = JSON.parse((await tool(gw, WIDE, h, 2, "env")) as string) as Record<string, string>;
    expect(env.MCPGATE_SUBJECT).toBe("key:alice");
    expect(env.MCPGATE_SCOPES).toBe("notes:read notes:write");
    expect(decodeJwt(env.MCPGATE_IDENTITY!).scope).toBe("notes:read notes:write");

    // The gate's answer to another principal on this session (its binding check, session_mismatch).
    const bobAnswer = await answerOf(
      await rawPost(
        gw.url,
        BOB,
        { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "heard" } },
        h,
      ),
    );
    expect(bobAnswer.status).toBe(404);
    expect(JSON.parse(bobAnswer.body)).toEqual({
      jsonrpc: "2.0",
      error: { code: -31003, message: "Session not found" },
      id: null,
    });

    // The narrower credential of the same principal: the same answer, exactly, for a request, a
    // notification and a GET stream.
    const call = {
      jsonrpc: "2.0",
      id: 4,
      method: "tools/call",
      params: { name: "sleep", arguments: { ms: 1 } },
    };
    expect(await answerOf(await rawPost(gw.url, NARROW, call, h))).toEqual(bobAnswer);
    expect(await answerOf(await rawPost(gw.url, NARROW, NOTE_X, h))).toEqual(bobAnswer);
    const get = await fetch(gw.url, {
      headers: { authorization: `Bearer ${NARROW}`, ...h, accept: "text/event-stream" },
    });
    expect(await answerOf(get)).toEqual(bobAnswer);
    // Another tenant of the same principal, with the same scopes: refused too.
    expect(await answerOf(await rawPost(gw.url, TENANT, NOTE_X, h))).toEqual(bobAnswer);
    // Audited as the gate audits another principal's use: four refusals of key:alice, one of bob.
    const mismatches = audits.filter((e) => e.type === "session_mismatch");
    expect(mismatches.filter((e) => e.actor?.includes("alice"))).toHaveLength(4);
    expect(mismatches.every((e) => e.sessionId !== undefined && e.sessionId !== h["mcp-session-id"])).toBe(
      true,
    );

    // The child received none of it, and the owner's session lives on (the gate did not forget it).
    expect(await childSaw(gw, WIDE, h, 10)).toEqual({ heard: 0, sleeps: 0 });
    expect(gw.upstream.sessionPid(h["mcp-session-id"]!)).toBe(pid);

    // The same credential, and a refreshed one of the same identity, keep working on the session.
    expect((await rawPost(gw.url, WIDE, NOTE_X, h)).status).toBe(202);
    expect((await rawPost(gw.url, REFRESHED, NOTE_X, h)).status).toBe(202);
    expect(await tool(gw, REFRESHED, h, 20, "sleep")).toBe("slept");
    expect(await childSaw(gw, REFRESHED, h, 21)).toEqual({ heard: 2, sleeps: 1 });
    expect(gw.upstream.sessionPid(h["mcp-session-id"]!)).toBe(pid);

    // The principal may always end its own session, whatever its credential now says (a DELETE
    // tells the child nothing): its child is not left counted against its share until it idles.
    // Another principal still may not.
    const bobDel = await fetch(gw.url, {
      method: "DELETE",
      headers: { authorization: `Bearer ${BOB}`, ...h },
    });
    expect(await answerOf(bobDel)).toEqual(bobAnswer);
    const del = await fetch(gw.url, {
      method: "DELETE",
      headers: { authorization: `Bearer ${NARROW}`, ...h },
    });
    expect(del.status).toBeLessThan(300);
    await expect.poll(() => gw!.upstream.sessionPid(h["mcp-session-id"]!)).toBeUndefined();
  });

  it("lets every credential of the session's principal use it without an identity hook (the child was told nothing)", async () => {
    gw = await startStdioGateway({ verifier });
    const h = await openSession(gw, WIDE);
    const env = JSON.parse((await tool(gw, WIDE, h, 2, "env")) as string) as Record<string, string>;
    expect(env.MCPGATE_SCOPES).toBeUndefined();
    expect((await rawPost(gw.url, NARROW, NOTE_X, h)).status).toBe(202);
    expect((await rawPost(gw.url, TENANT, NOTE_X, h)).status).toBe(202);
    expect(await tool(gw, NARROW, h, 3, "sleep")).toBe("slept");
    expect(await childSaw(gw, WIDE, h, 10)).toEqual({ heard: 2, sleeps: 1 });
    // Another principal is still refused by the gate.
    expect((await rawPost(gw.url, BOB, NOTE_X, h)).status).toBe(404);
  });
});
