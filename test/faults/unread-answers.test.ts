import { connect, type Socket } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { createGate } from "../../src/gate/gate.js";
import { createHttpUpstream } from "../../src/gateway/http-upstream.js";
import { createGatewayServer } from "../../src/gateway/server.js";
import { type AnswerBudget, createAnswerBudget } from "../../src/http/answer-budget.js";
import { createLogger } from "../../src/observe/logger.js";
import { startStdioGateway } from "../gateway/stdio-helpers.js";
import { callersFrom, KEYS, twoCallers } from "../helpers/callers.js";
import { connectClient, rawPost, rawSession } from "../helpers/client.js";
import { startTestGateway } from "../helpers/gateway.js";
import { startRecordingUpstream } from "../helpers/upstream.js";

/**
 * One caller asks for many large answers and never reads them. Each answer is bounded (8 MiB), but
 * before the answer budget the gateway held them all: 90 answers of 4 MiB held 1.1 GiB of one
 * gateway (bench/ measurement in the issue note). Now a caller's unread answers have a share
 * (`limits.answerBufferPerCaller`), the total is bounded, an answer nobody takes is dropped after
 * the slow-client bound, and other callers are served meanwhile.
 */

const MiB = 1024 * 1024;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

/** An SDK upstream whose `big` tool answers `size` characters of text. */
async function startBigUpstream(jsonResponse: boolean) {
  const up = await startRecordingUpstream({
    jsonResponse,
    makeServer: () => {
      const server = new McpServer({ name: "big", version: "1.0.0" });
      server.registerTool(
        "big",
        { description: "a large answer", inputSchema: { size: z.number() } },
        async ({ size }) => ({ content: [{ type: "text", text: "x".repeat(size) }] }),
      );
      return server;
    },
  });
  cleanups.push(() => up.close());
  return up;
}

/** A session of the caller with `key` on `url` (raw): the headers its requests carry. */
const sessionHeaders = (url: string, key: string) => rawSession(url, `Bearer ${key}`);

const bigCall = (id: number, size: number) =>
  JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name: "big", arguments: { size } } });

/** A client that sends one request and never reads: its socket, and what it received once read. */
function unreadRequest(url: string, headers: Record<string, string>, body: string) {
  const u = new URL(url);
  const socket: Socket = connect(Number(u.port), "127.0.0.1");
  const head = Object.entries({
    host: u.host,
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    ...headers,
    "content-length": String(Buffer.byteLength(body)),
  })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  socket.write(`POST ${u.pathname} HTTP/1.1\r\n${head}\r\n${body}`);
  socket.pause();
  let closed = false;
  socket.on("close", () => {
    closed = true;
  });
  socket.on("error", () => {});
  cleanups.push(async () => void socket.destroy());
  return {
    socket,
    get closed() {
      return closed;
    },
    /** Read what arrived so far (and what follows for a moment): the status line and the text. */
    /** Read what arrived and what follows, until nothing more comes for 300 ms (at most 10 s). */
    async read(): Promise<string> {
      const chunks: Buffer[] = [];
      let last = Date.now();
      socket.on("data", (c: Buffer) => {
        chunks.push(c);
        last = Date.now();
      });
      socket.resume();
      const t0 = Date.now();
      while (Date.now() - t0 < 10_000 && !closed) {
        await new Promise((r) => setTimeout(r, 50));
        if (chunks.length > 0 && Date.now() - last >= 300) break;
      }
      return Buffer.concat(chunks).toString("latin1");
    },
  };
}

/** A gateway in front of `upstreamUrl` with an answer budget of its own (to read its counts). */
/** Callers c1…c5, each its own principal `key:cN` (its token is its name: test only). */
const manyCallers = callersFrom(Object.fromEntries(["c1", "c2", "c3", "c4", "c5"].map((c) => [c, c])));

async function gatewayWith(
  upstreamUrl: string,
  budget: AnswerBudget,
  slowClientMs = 60_000,
  verifier = twoCallers,
) {
  const gw = createGatewayServer({
    mounts: [
      {
        name: "default",
        path: "/mcp",
        gate: createGate({ verifiers: [verifier], publicUrl: "http://127.0.0.1/mcp" }),
        upstream: createHttpUpstream({ url: upstreamUrl, timeoutMs: 5_000 }),
        owner: { answerBudget: budget, slowClientMs },
      },
    ],
    logger: createLogger({ level: "silent" }),
    shutdownGraceMs: 100,
  });
  const { port } = await gw.listen(0, "127.0.0.1");
  cleanups.push(() => gw.close());
  return `http://127.0.0.1:${port}/mcp`;
}

describe.each([
  ["JSON", true],
  ["SSE", false],
])("unread %s answers of one caller", (_kind, jsonResponse) => {
  it("past the caller's share: its next calls are refused before they run (429), another caller is served", async () => {
    const up = await startBigUpstream(jsonResponse);
    const budget = createAnswerBudget({ perCaller: 8 * MiB, total: 64 * MiB });
    const url = await gatewayWith(up.url, budget);
    const alice = await sessionHeaders(url, KEYS.alice);
    const calls = () => up.rpcCalls().filter((c) => c === "tools/call:big").length;
    // A 7 MiB answer Alice never reads (more than the kernel's socket buffers take: what is left
    // stays in the gateway until her client reads).
    const first = unreadRequest(url, alice, bigCall(100, 7 * MiB));
    await expect.poll(() => budget.heldBy("key:alice"), { timeout: 5_000 }).toBeGreaterThan(4 * MiB);
    // Her next calls find no room for one more answer: refused, and never sent upstream (a call
    // whose answer could only be dropped must not run).
    const more = Array.from({ length: 3 }, (_, i) => unreadRequest(url, alice, bigCall(101 + i, 7 * MiB)));
    const seen = await Promise.all(more.map((u) => u.read()));
    for (const t of seen) {
      expect(t.startsWith("HTTP/1.1 429")).toBe(true);
      expect(t).toContain('"code":-31002');
      expect(t).toContain("unread answers");
      expect(t.toLowerCase()).toContain("retry-after: 1");
    }
    expect(calls()).toBe(1);
    expect(budget.heldBy("key:alice")).toBeLessThanOrEqual(8 * MiB);

    // Bob is served whole, at once.
    const bob = await connectClient(url, KEYS.bob);
    cleanups.push(() => bob.client.close());
    const answer = await bob.client.callTool({ name: "big", arguments: { size: 2 * MiB } });
    expect((answer.content as Array<{ text: string }>)[0]!.text).toHaveLength(2 * MiB);

    // Once her client leaves, her share is whole again.
    first.socket.destroy();
    await expect.poll(() => budget.held, { timeout: 3_000 }).toBe(0);
    const again = await rawPost(url, bigCall(7, 1 * MiB), alice);
    expect(again.status).toBe(200);
    expect(again.text.length).toBeGreaterThan(1 * MiB);
  });

  it("sent at once: what the share cannot hold is dropped with -31012 (the call ran: no Retry-After)", async () => {
    const up = await startBigUpstream(jsonResponse);
    const budget = createAnswerBudget({ perCaller: 8 * MiB, total: 64 * MiB });
    const url = await gatewayWith(up.url, budget);
    const alice = await sessionHeaders(url, KEYS.alice);
    const unread = Array.from({ length: 5 }, (_, i) => unreadRequest(url, alice, bigCall(100 + i, 7 * MiB)));
    await new Promise((r) => setTimeout(r, 1_000));
    expect(budget.heldBy("key:alice")).toBeLessThanOrEqual(8 * MiB);
    const seen = await Promise.all(unread.map((u) => u.read()));
    // Refused before they ran (429), or dropped once their answer came (-31012): never held.
    const dropped = seen.filter((t) => t.includes('"code":-31012'));
    const refused = seen.filter((t) => t.startsWith("HTTP/1.1 429"));
    expect(dropped.length + refused.length).toBeGreaterThanOrEqual(4);
    for (const t of dropped) {
      if (jsonResponse) expect(t.startsWith("HTTP/1.1 503")).toBe(true);
      expect(t.toLowerCase()).not.toContain("retry-after");
    }
    for (const u of unread) u.socket.destroy();
    await expect.poll(() => budget.held, { timeout: 3_000 }).toBe(0);
  });
});

describe("the answer budget of all callers", () => {
  it("keeps its last share for callers holding little: two callers' unread answers never shut out a third", async () => {
    const up = await startBigUpstream(true);
    // A share of 8 MiB, 32 in all: 8 MiB is kept for callers that would hold at most 2 MiB.
    const budget = createAnswerBudget({ perCaller: 8 * MiB, total: 32 * MiB });
    const url = await gatewayWith(up.url, budget, 60_000, manyCallers);
    const unread: Array<ReturnType<typeof unreadRequest>> = [];
    for (const who of ["c1", "c2", "c3"]) {
      unread.push(unreadRequest(url, await sessionHeaders(url, who), bigCall(1, 7 * MiB)));
      await expect.poll(() => budget.heldBy(`key:${who}`), { timeout: 5_000 }).toBeGreaterThan(4 * MiB);
    }
    // A fourth large answer does not fit in what is left but the kept share…
    const fourth = unreadRequest(url, await sessionHeaders(url, "c4"), bigCall(1, 7 * MiB));
    // (its call ran, its answer is dropped: no Retry-After invites running it again)
    const dropped = await fourth.read();
    expect(dropped).toMatch(/^HTTP\/1.1 503[\s\S]*"code":-31009/);
    expect(dropped.toLowerCase()).not.toContain("retry-after");
    // …which a caller asking for a small answer still gets.
    const small = await rawPost(url, bigCall(2, 1 * MiB), await sessionHeaders(url, "c5"));
    expect(small.status).toBe(200);
    expect(small.text.length).toBeGreaterThan(1 * MiB);
    for (const u of unread) u.socket.destroy();
  });
});

describe("a caller past what the total leaves it", () => {
  it("is refused before its call runs (503 -31009, Retry-After): nothing is sent upstream", async () => {
    const up = await startBigUpstream(true);
    // A share of 16, 64 in all: callers holding more than 4 may use 48 of it.
    const budget = createAnswerBudget({ perCaller: 16 * MiB, total: 64 * MiB });
    const url = await gatewayWith(up.url, budget);
    const alice = await sessionHeaders(url, KEYS.alice);
    // Alice holds 5 (a large holder), others 44: the 48 large holders may use is spent.
    expect(budget.take("key:alice", 5 * MiB)).toBe("ok");
    for (const [who, n] of [
      ["x1", 16],
      ["x2", 16],
      ["x3", 11],
    ] as const)
      expect(budget.take(who, n * MiB)).toBe("ok");
    expect(budget.take("light", 1 * MiB)).toBe("ok");
    const refused = await rawPost(url, bigCall(3, 1 * MiB), alice);
    expect(refused.status).toBe(503);
    expect(refused.json()).toMatchObject({ error: { code: -31009 } });
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(up.rpcCalls().filter((c) => c === "tools/call:big")).toHaveLength(0);
    // A caller holding nothing still gets its answer (the kept share).
    const bob = await rawPost(url, bigCall(4, 1 * MiB), await sessionHeaders(url, KEYS.bob));
    expect(bob.status).toBe(200);
  });
});

describe("an answer its client never takes", () => {
  it("is dropped after the slow-client bound, and what it held is given back", async () => {
    const up = await startBigUpstream(true);
    const budget = createAnswerBudget({ perCaller: 64 * MiB, total: 64 * MiB });
    const url = await gatewayWith(up.url, budget, 800);
    const alice = await sessionHeaders(url, KEYS.alice);
    const unread = unreadRequest(url, alice, bigCall(5, 7 * MiB));
    await expect.poll(() => budget.heldBy("key:alice"), { timeout: 5_000 }).toBeGreaterThan(0);
    // The client keeps its socket open and never reads: the gateway lets go of the answer (what the
    // kernel took of it is all the client will ever get).
    const t0 = performance.now();
    await expect.poll(() => budget.held, { timeout: 5_000 }).toBe(0);
    expect(performance.now() - t0).toBeLessThan(3_000);
    const got = await unread.read();
    await expect.poll(() => unread.closed, { timeout: 5_000 }).toBe(true);
    expect(got.startsWith("HTTP/1.1 200")).toBe(true);
    expect(got.length).toBeLessThan(7 * MiB);
  });
});

describe("an answer its client takes slowly", () => {
  it("is not dropped while the client keeps taking it, however long that takes past the bound", async () => {
    const up = await startBigUpstream(true);
    const budget = createAnswerBudget({ perCaller: 64 * MiB, total: 64 * MiB });
    const url = await gatewayWith(up.url, budget, 1_000);
    const alice = await sessionHeaders(url, KEYS.alice);
    const size = 7.5 * MiB;
    const slow = unreadRequest(url, alice, bigCall(5, size));
    // About 1.3 MiB/s, 64 KiB at a time: several times the slow-client bound to take it all.
    let got = 0;
    let burst = 0;
    slow.socket.on("data", (c: Buffer) => {
      got += c.length;
      burst += c.length;
      if (burst >= 64 * 1024) slow.socket.pause();
    });
    const t0 = performance.now();
    while (got < size && !slow.closed && performance.now() - t0 < 15_000) {
      burst = 0;
      slow.socket.resume();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(performance.now() - t0).toBeGreaterThan(2_000);
    expect(slow.closed).toBe(false);
    expect(got).toBeGreaterThan(size);
    await expect.poll(() => budget.held, { timeout: 3_000 }).toBe(0);
  });
});

describe("limits.answerBufferPerCaller in mcpgate serve", () => {
  it("reaches the relay: a caller past its share of unread answers gets 429, and its call does not run", async () => {
    const up = await startBigUpstream(true);
    const key = "unread-answers-key-0123456789abcdef";
    const gw = await startTestGateway(
      { upstream: { url: up.url }, limits: { answerBufferPerCaller: 8 * MiB } },
      { MCP_API_KEY: key },
      "warn",
    );
    cleanups.push(() => gw.close());
    const h = await sessionHeaders(gw.url, key);
    const calls = () => up.rpcCalls().filter((c) => c === "tools/call:big").length;
    const first = unreadRequest(gw.url, h, bigCall(10, 7 * MiB));
    await expect.poll(calls, { timeout: 5_000 }).toBe(1);
    await new Promise((r) => setTimeout(r, 500));
    // Her unread answer leaves no room in an 8 MiB share for one more: refused before it runs.
    const next = await rawPost(gw.url, bigCall(11, 7 * MiB), h);
    expect(next.status).toBe(429);
    expect(next.text).toContain("unread answers");
    expect(calls()).toBe(1);
    first.socket.destroy();
  });
});

describe.each([
  ["JSON", "application/json"],
  ["SSE", "application/json, text/event-stream"],
])("unread %s answers of a stdio child", (_kind, accept) => {
  it("hold at most the caller's share; past it the caller is refused while another is served", async () => {
    const budget = createAnswerBudget({ perCaller: 8 * MiB, total: 64 * MiB });
    const gw = await startStdioGateway({ owner: { answerBudget: budget } });
    cleanups.push(() => gw.close());
    const alice = { ...(await sessionHeaders(gw.url, KEYS.alice)), accept };
    const unread = Array.from({ length: 5 }, (_, i) =>
      unreadRequest(gw.url, alice, bigCall(100 + i, 7 * MiB)),
    );
    await new Promise((r) => setTimeout(r, 1_500));
    expect(budget.heldBy("key:alice")).toBeLessThanOrEqual(8 * MiB);
    // A collected JSON answer is held; a stream is not (while it is not read, the child's output
    // is not read either).
    if (accept === "application/json") expect(budget.heldBy("key:alice")).toBeGreaterThan(0);
    else expect(budget.heldBy("key:alice")).toBe(0);
    // Bob's own child answers him whole.
    const bob = await sessionHeaders(gw.url, KEYS.bob);
    const answer = await rawPost(gw.url, bigCall(1, 2 * MiB), bob);
    expect(answer.status).toBe(200);
    expect(answer.text.length).toBeGreaterThan(2 * MiB);
    const seen = await Promise.all(unread.map((u) => u.read()));
    if (accept === "application/json") {
      // Collected answers past the share: refused before the call (429) or dropped after (-31012).
      const refused = seen.filter((t) => t.includes('"code":-31002') || t.includes('"code":-31012'));
      expect(refused.length).toBeGreaterThanOrEqual(3);
    }
    for (const u of unread) u.socket.destroy();
    await expect.poll(() => budget.held, { timeout: 3_000 }).toBe(0);
  });
});
