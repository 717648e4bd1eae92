import { describe, expect, it } from "vitest";
import { decideEra } from "../../src/mcp/era.js";
import { parseJsonRpc } from "../../src/mcp/jsonrpc.js";

const M26 = { "io.modelcontextprotocol/protocolVersion": "2026-07-28" };
const M25 = { "io.modelcontextprotocol/protocolVersion": "2025-06-18" };

function messages(body: unknown) {
  const r = parseJsonRpc(JSON.stringify(body));
  if (!r.ok) throw new Error(r.message);
  return r.messages;
}
const call = (id: number, meta?: Record<string, string>) => ({
  jsonrpc: "2.0",
  id,
  method: "tools/call",
  params: { name: "echo", arguments: {}, ...(meta ? { _meta: meta } : {}) },
});

describe("decideEra: one decision for the whole request (issue 14 item 8)", () => {
  it("keeps a plain 2025 request in the 2025 era with its session id to check", () => {
    expect(decideEra({ protocolHeader: "2025-06-18", sessionId: "s1", messages: messages(call(1)) })).toEqual(
      {
        ok: true,
        era: "2025",
        sessionId: "s1",
      },
    );
    expect(decideEra({ messages: messages(call(1)) })).toEqual({ ok: true, era: "2025" });
  });

  it("serves a 2026 request statelessly, marked by the header, the _meta, or both", () => {
    for (const input of [
      { protocolHeader: "2026-07-28", messages: messages(call(1)) },
      { messages: messages(call(1, M26)) },
      { protocolHeader: "2026-07-28", messages: messages(call(1, M26)) },
    ]) {
      expect(decideEra(input)).toEqual({ ok: true, era: "2026" });
    }
  });

  it("refuses a 2026 marker together with an Mcp-Session-Id (alone and in a batch)", () => {
    const alone = decideEra({ sessionId: "victim", messages: messages(call(1, M26)) });
    expect(alone.ok).toBe(false);
    const header = decideEra({
      protocolHeader: "2026-07-28",
      sessionId: "victim",
      messages: messages(call(1)),
    });
    expect(header.ok).toBe(false);
    const batch = decideEra({
      protocolHeader: "2025-03-26",
      sessionId: "victim",
      messages: messages([call(1, M26), call(2, M26)]),
    });
    expect(batch.ok).toBe(false);
  });

  it("refuses a batch with only one element marked 2026, and conflicting markers", () => {
    const r = decideEra({ messages: messages([call(1), call(2, M26)]) });
    expect(r).toMatchObject({ ok: false });
    expect(decideEra({ messages: messages([call(1, M25), call(2, M26)]) }).ok).toBe(false);
    expect(decideEra({ protocolHeader: "2025-06-18", messages: messages(call(1, M26)) }).ok).toBe(false);
    expect(decideEra({ protocolHeader: "2026-07-28", messages: messages(call(1, M25)) }).ok).toBe(false);
  });

  it("ignores responses (they carry no _meta) and unknown version strings", () => {
    const withResponse = messages([call(1, M26), { jsonrpc: "2.0", id: 9, result: {} }]);
    expect(decideEra({ messages: withResponse })).toEqual({ ok: true, era: "2026" });
    expect(decideEra({ protocolHeader: "1999-01-01", sessionId: "s", messages: messages(call(1)) })).toEqual({
      ok: true,
      era: "2025",
      sessionId: "s",
    });
  });
});
