import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createSseRewriter, type RewritePlan } from "../../src/mcp/response-rewriter.js";
import { SseParser } from "../../src/mcp/sse.js";

/** One event as an EventSource client dispatches it (WHATWG HTML §9.2.6). */
interface ClientEvent {
  type: string;
  data: string;
  lastEventId: string;
}

/**
 * An independent reference of the WHATWG "interpret an event stream" algorithm over a complete
 * stream: lines end in CRLF, LF or CR; a blank line dispatches; an unterminated event at end of
 * stream is discarded. Written from the spec, not from src/mcp/sse.ts.
 */
function referenceEvents(stream: string): ClientEvent[] {
  const out: ClientEvent[] = [];
  let data = "";
  let type = "";
  let lastEventId = "";
  let pos = 0;
  while (pos < stream.length) {
    const m = /\r\n|\r|\n/.exec(stream.slice(pos));
    if (!m) break; // incomplete last line: discarded with the incomplete event
    const line = stream.slice(pos, pos + m.index);
    pos += m.index + m[0].length;
    if (line === "") {
      if (data !== "") {
        out.push({
          type: type || "message",
          data: data.endsWith("\n") ? data.slice(0, -1) : data,
          lastEventId,
        });
      }
      data = "";
      type = "";
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data += `${value}\n`;
    else if (field === "event") type = value;
    else if (field === "id" && !value.includes("\u0000")) lastEventId = value;
  }
  return out;
}

const EOL = fc.constantFrom("\n", "\r\n", "\r");
/** Field values without line breaks (a break would end the line). */
const value = fc.string({ unit: fc.constantFrom(...' abc:{}"[],0é\u{1F600}\t'.split("")), maxLength: 12 });
const line = fc.oneof(
  value.map((v) => `data: ${v}`),
  value.map((v) => `data:${v}`),
  fc.constant("data"),
  value.map((v) => `: ${v}`),
  value.map((v) => `event: ${v}`),
  value.map((v) => `id: ${v}`),
  fc.constant("retry: 1000"),
  value.map((v) => `unknown: ${v}`),
);
/** An event: lines, each with its own line ending, then a blank line. */
const event = fc
  .tuple(fc.array(fc.tuple(line, EOL), { minLength: 1, maxLength: 5 }), EOL)
  .map(([lines, end]) => lines.map(([l, e]) => l + e).join("") + end);
const stream = fc
  .tuple(fc.array(event, { maxLength: 6 }), fc.option(fc.array(fc.tuple(line, EOL), { maxLength: 2 })))
  .map(([evs, tail]) => evs.join("") + (tail ? tail.map(([l, e]) => l + e).join("") : ""));

/** Cut a string at the given positions (sorted, duplicates allowed: they make empty chunks). */
function splitAt(text: string, cuts: number[]): string[] {
  const points = cuts.map((c) => c % (text.length + 1)).sort((a, b) => a - b);
  const chunks: string[] = [];
  let prev = 0;
  for (const p of points) {
    chunks.push(text.slice(prev, p));
    prev = p;
  }
  chunks.push(text.slice(prev));
  return chunks;
}

const cuts = fc.array(fc.nat(), { maxLength: 12 });

function rewrite(chunks: string[], plan: RewritePlan): string {
  const r = createSseRewriter(plan);
  return chunks.map((c) => r.push(c)).join("") + r.end();
}

const PASS_ALL: RewritePlan = { listIds: new Map(), era: "2025", localResponses: [] };
const FILTER_NOTHING: RewritePlan = {
  listIds: new Map([["1", "tools/list"]]),
  visible: () => true,
  era: "2025",
  localResponses: [],
};

describe("SseParser and the SSE rewriter under fuzzing", () => {
  it("parses the events a browser would, whichever way the stream is split", () => {
    fc.assert(
      fc.property(stream, cuts, (text, at) => {
        const p = new SseParser();
        const got = splitAt(text, at).flatMap((c) => p.push(c));
        // Compare data-bearing events (the ones a client dispatches); ids carry over per the spec.
        let lastId = "";
        const seen: ClientEvent[] = [];
        for (const e of got) {
          if (e.id !== undefined && !e.id.includes("\u0000")) lastId = e.id;
          if (e.data !== undefined)
            seen.push({ type: e.event || "message", data: e.data, lastEventId: lastId });
        }
        expect(seen).toEqual(referenceEvents(text));
      }),
      { numRuns: 1500 },
    );
  });

  it("passes a stream through unchanged in meaning when nothing is filtered, for every split", () => {
    fc.assert(
      fc.property(stream, cuts, fc.constantFrom(PASS_ALL, FILTER_NOTHING), (text, at, plan) => {
        const out = rewrite(splitAt(text, at), plan);
        expect(referenceEvents(out)).toEqual(referenceEvents(text));
      }),
      { numRuns: 1500 },
    );
  });

  it("never lets a hidden list item through, whatever the split, line endings or extra events", () => {
    const name = fc.oneof(
      fc.constantFrom("echo", "add", "search"),
      fc.integer({ min: 0, max: 999 }).map((n) => `hidden_${n}`),
    );
    const listResponse = fc
      .tuple(fc.constantFrom(1, "a", 7), fc.array(name, { maxLength: 6 }))
      .map(([id, names]) => ({ jsonrpc: "2.0", id, result: { tools: names.map((n) => ({ name: n })) } }));
    const other = fc.oneof(
      fc.constant({ jsonrpc: "2.0", method: "notifications/progress", params: { progress: 1 } }),
      fc.constant({ jsonrpc: "2.0", id: 99, result: {} }),
    );
    const ev = fc
      .tuple(fc.oneof(listResponse, other), EOL, fc.boolean(), fc.boolean(), fc.boolean())
      .map(([msg, eol, multiLine, withId, comment]) => {
        const json = JSON.stringify(msg, null, multiLine ? 1 : undefined);
        const data = json
          .split("\n")
          .map((l) => `data: ${l}${eol}`)
          .join("");
        return (comment ? `: keepalive${eol}` : "") + (withId ? `id: 5${eol}` : "") + data + eol;
      });
    fc.assert(
      fc.property(fc.array(ev, { minLength: 1, maxLength: 5 }), cuts, (evs, at) => {
        const text = evs.join("");
        const plan: RewritePlan = {
          listIds: new Map([
            ["1", "tools/list"],
            ['"a"', "tools/list"],
            ["7", "tools/list"],
          ]),
          visible: (_kind, n) => !n.startsWith("hidden_"),
          era: "2025",
          localResponses: [],
        };
        const out = rewrite(splitAt(text, at), plan);
        expect(out).not.toMatch(/hidden_/);
        // Visible items all survive, in order.
        const names = (s: string) =>
          referenceEvents(s).flatMap((e) => {
            const v = JSON.parse(e.data);
            return (v.result?.tools ?? []).map((t: { name: string }) => t.name);
          });
        expect(names(out)).toEqual(names(text).filter((n) => !n.startsWith("hidden_")));
        // Non-list events are passed through with their data intact.
        const others = (s: string) => referenceEvents(s).filter((e) => !e.data.includes('"tools"'));
        expect(others(out)).toEqual(others(text));
      }),
      { numRuns: 1000 },
    );
  });

  it("drops an unterminated trailing event while filtering (it could hold an unfiltered list)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), cuts, (n, at) => {
        const text = `data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"hidden_${n}"}]}}\n`;
        const out = rewrite(splitAt(text, at), {
          listIds: new Map([["1", "tools/list"]]),
          visible: (_k, name) => !name.startsWith("hidden_"),
          era: "2025",
          localResponses: [],
        });
        expect(out).not.toContain("hidden_");
      }),
      { numRuns: 100 },
    );
  });
});
