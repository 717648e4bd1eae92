import { describe, expect, it } from "vitest";
import type { InspectedMessage } from "../../src/core/message.js";
import { MAX_ID_LENGTH, parseJsonRpc } from "../../src/mcp/jsonrpc.js";
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
    // The session came back (a new map): the old request's answer cannot be attributed, so it is dropped.
    expect(answerA(TTL + 2)).toBeUndefined();
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
