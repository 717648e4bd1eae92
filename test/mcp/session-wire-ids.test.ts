import { describe, expect, it } from "vitest";
import type { InspectedMessage } from "../../src/core/message.js";
import { MAX_ID_LENGTH, parseJsonRpc } from "../../src/mcp/jsonrpc.js";
import type { VisibilityPredicate } from "../../src/mcp/list-filter.js";
import { SessionWireIds, WireIds } from "../../src/mcp/wire-ids.js";

const TTL = 60_000;
const call = (id: number): InspectedMessage =>
  ({
    type: "request",
    id,
    method: "tools/call",
    name: "echo",
    raw: { jsonrpc: "2.0", id, method: "tools/call" },
  }) as InspectedMessage;

/** A's request goes out; its answer is looked up later through the session's map (the GET stream). */
function pendingAnswer(maps: SessionWireIds, sessionId: string, now: number) {
  const out = maps.forSession(sessionId, now).outbound([call(7)]);
  const wire = out.wireIds[0]!;
  return (later: number) =>
    maps.forSession(sessionId, later).inbound({ jsonrpc: "2.0", id: wire, result: {} }, undefined, "2025");
}

describe("SessionWireIds: one upstream's id maps shared by every caller", () => {
  it("keeps a live session's map however many sessions another caller opens up to sessions.max", () => {
    const maps = new SessionWireIds({ prefix: "p-", maxSessions: 100, idleTtlMs: TTL });
    const answerA = pendingAnswer(maps, "session-of-A", 0);
    // Another caller opens and uses every other session the gate would admit (99), one per ms.
    for (let i = 0; i < 99; i++) maps.forSession(`session-of-X-${i}`, 1 + i);
    expect(maps.size).toBe(100);
    expect(answerA(200)).toMatchObject({ id: 7 });
  });

  it("forgets a map once its session has been idle past the TTL, as the gate forgets the session", () => {
    const maps = new SessionWireIds({ prefix: "p-", maxSessions: 100, idleTtlMs: TTL });
    const answerA = pendingAnswer(maps, "session-of-A", 0);
    maps.forSession("session-of-X", TTL + 1);
    expect(maps.size).toBe(1);
    // A late answer is still attributed: its wire id says what it answers (see below).
    expect(answerA(TTL + 2)).toMatchObject({ id: 7 });
  });

  it("is bounded: past maxSessions the least recently used map goes, never more than maxSessions held", () => {
    const maps = new SessionWireIds({ prefix: "p-", maxSessions: 3, idleTtlMs: TTL });
    for (let i = 0; i < 10; i++) maps.forSession(`s${i}`, i);
    expect(maps.size).toBe(3);
  });

  it("forgets an ended session at once, and never keeps a stateless request's map", () => {
    const maps = new SessionWireIds({ prefix: "p-", maxSessions: 3, idleTtlMs: TTL });
    maps.forSession("s", 0);
    maps.forget("s");
    maps.forRequest();
    expect(maps.size).toBe(0);
  });
});

describe("WireIds: one session's map is bounded whatever the caller sends", () => {
  it("keeps at most maxPending requests and as many cancellation targets, however many go unanswered", () => {
    const ids = new WireIds("w-", 16);
    for (let i = 0; i < 1000; i++) ids.outbound([call(i)]);
    expect(ids.size).toBe(16);
    expect(ids.cancellable).toBeLessThanOrEqual(16);
    // The newest requests are still attributable (and cancellable).
    const out = ids.outbound([
      {
        type: "notification",
        method: "notifications/cancelled",
        raw: { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 999 } },
      } as InspectedMessage,
    ]);
    expect(out.messages).toHaveLength(1);
  });

  it("refuses a string id longer than MAX_ID_LENGTH before it reaches any map", () => {
    const long = parseJsonRpc(
      JSON.stringify({ jsonrpc: "2.0", id: "x".repeat(MAX_ID_LENGTH + 1), method: "ping" }),
    );
    expect(long.ok).toBe(false);
    const ok = parseJsonRpc(
      JSON.stringify({ jsonrpc: "2.0", id: "x".repeat(MAX_ID_LENGTH), method: "ping" }),
    );
    expect(ok.ok).toBe(true);
  });
});

describe("a session's wire ids describe themselves: any instance maps the answer back", () => {
  const list = (id: number): InspectedMessage =>
    ({
      type: "request",
      id,
      method: "tools/list",
      raw: { jsonrpc: "2.0", id, method: "tools/list" },
    }) as InspectedMessage;
  const hideAdmin: VisibilityPredicate = (_kind, name) => name !== "secret_admin";
  const tools = { tools: [{ name: "echo" }, { name: "secret_admin" }] };
  // Two gateway instances: each its own prefix, the same session ids (shared state).
  const instanceA = () =>
    new SessionWireIds({ prefix: "mcpgate-0000000a-", maxSessions: 10, idleTtlMs: TTL });
  const instanceB = () =>
    new SessionWireIds({ prefix: "mcpgate-0000000b-", maxSessions: 10, idleTtlMs: TTL });

  it("maps a replayed answer of a request A forwarded back on B, with the client's id, filtered as a list", () => {
    const wire = instanceA()
      .forSession("sess-1", 0)
      .outbound([list(42)]).wireIds[0]!;
    const back = instanceB()
      .forSession("sess-1", 1)
      .inbound({ jsonrpc: "2.0", id: wire, result: tools }, hideAdmin, "2025");
    expect(back).toMatchObject({ id: 42, result: { tools: [{ name: "echo" }] } });
  });

  it("maps back the longest ids a client may send, in any characters", () => {
    for (const clientId of ["€".repeat(256), "\u0001".repeat(256), "x".repeat(256)]) {
      const m = { ...call(1), id: clientId, raw: { jsonrpc: "2.0", id: clientId, method: "tools/call" } };
      const wire = instanceA()
        .forSession("sess-1", 0)
        .outbound([m as InspectedMessage]).wireIds[0]!;
      const back = instanceB()
        .forSession("sess-1", 1)
        .inbound({ jsonrpc: "2.0", id: wire, result: {} }, undefined, "2025");
      expect(back?.id).toBe(clientId);
    }
  });

  it("keeps its own requests by the id's head: a description changed on the way moves no answer", () => {
    const ids = instanceA().forSession("sess-1", 0);
    const wire = ids.outbound([call(7)]).wireIds[0]!;
    const [head, tag] = wire.split(".");
    const forged = `${head}.${tag}.${Buffer.from(JSON.stringify(8)).toString("base64url")}`;
    expect(ids.inbound({ jsonrpc: "2.0", id: forged, result: {} }, undefined, "2025")).toMatchObject({
      id: 7,
    });
    // And a cancellation names the whole wire id the upstream saw.
    const cancel = ids.outbound([call(9)]);
    const out = ids.outbound([
      {
        type: "notification",
        method: "notifications/cancelled",
        raw: { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 9 } },
      } as InspectedMessage,
    ]);
    expect((out.messages[0]!.params as { requestId: string }).requestId).toBe(cancel.wireIds[0]);
  });

  it("delivers an answer again when the client asks for its replay on the same instance", () => {
    const ids = instanceA().forSession("sess-1", 0);
    const wire = ids.outbound([call(7)]).wireIds[0]!;
    const answer = { jsonrpc: "2.0", id: wire, result: {} };
    expect(ids.inbound(answer, undefined, "2025")).toMatchObject({ id: 7 });
    expect(ids.inbound(answer, undefined, "2025")).toMatchObject({ id: 7 });
  });

  it("filters a described answer as any list: the id cannot vouch for what it answers", () => {
    const ids = instanceA().forSession("sess-1", 0);
    // A tools/call's id, echoed on a list result (a confused or hostile upstream).
    const wire = ids.outbound([call(5)]).wireIds[0]!;
    const answer = { jsonrpc: "2.0", id: wire, result: tools };
    const b = instanceB().forSession("sess-1", 1);
    expect(b.inbound(answer, hideAdmin, "2025")).toMatchObject({
      id: 5,
      result: { tools: [{ name: "echo" }] },
    });
  });

  it("never reads another session's answer, a stateless request's, or a description not ours", () => {
    const a = instanceA();
    const other = a.forSession("sess-other", 0).outbound([list(1)]).wireIds[0]!;
    const stateless = a.forRequest().outbound([list(2)]).wireIds[0]!;
    const mine = a.forSession("sess-1", 0).outbound([list(3)]).wireIds[0]!;
    const [head, tag] = mine.split(".");
    const forged = (payload: unknown) =>
      `${head}.${tag}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}`;
    const b = instanceB().forSession("sess-1", 1);
    // The same request's answer is read (the control).
    expect(b.inbound({ jsonrpc: "2.0", id: mine, result: {} }, hideAdmin, "2025")).toMatchObject({ id: 3 });
    for (const id of [
      other,
      stateless,
      forged({ x: 1 }), // not a JSON-RPC id
      forged([1]),
      forged(true),
      `${head}.${tag}.not*base64`,
      `${head}.${tag}.${"A".repeat(2000)}`,
      `.${tag}.${forged(1).split(".")[2]}`, // no instance prefix
      "someone-else-9",
    ])
      expect(b.inbound({ jsonrpc: "2.0", id, result: tools }, hideAdmin, "2025"), id).toBeUndefined();
  });
});

describe("WireIds.abandon: requests whose answer stream was given up", () => {
  it("returns the client ids still unanswered, once, and forgets them (with their cancellation targets)", () => {
    const ids = new WireIds("p-");
    const out = ids.outbound([call(1), call(2), call(3)]);
    const [w1, w2, w3] = out.wireIds as [string, string, string];
    expect(ids.inbound({ jsonrpc: "2.0", id: w2, result: {} }, undefined, "2025")).toMatchObject({ id: 2 });
    expect(ids.abandon([w1, w2, w3, "p-unknown"])).toEqual([
      { wire: w1, clientId: 1 },
      { wire: w3, clientId: 3 },
    ]);
    expect(ids.size).toBe(0);
    expect(ids.cancellable).toBe(0);
    expect(ids.abandon([w1, w3])).toEqual([]);
    // A late answer outside a session cannot be attributed any more: dropped.
    expect(ids.inbound({ jsonrpc: "2.0", id: w1, result: {} }, undefined, "2025")).toBeUndefined();
  });

  it("finds a session's self-describing ids by their head", () => {
    const ids = new WireIds("p-", 4096, "session-1");
    const [wire] = ids.outbound([call(9)]).wireIds as [string];
    expect(wire).toMatch(/^p-1\./);
    expect(ids.abandon([wire])).toEqual([{ wire, clientId: 9 }]);
    expect(ids.size).toBe(0);
  });
});
