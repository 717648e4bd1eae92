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
import { KEYS, twoCallers } from "../helpers/callers.js";
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
    async read(): Promise<string> {
      const chunks: Buffer[] = [];
      socket.on("data", (c: Buffer) => chunks.push(c));
      socket.resume();
      await new Promise((r) => setTimeout(r, 300));
      return Buffer.concat(chunks).toString("latin1");
    },
  };
}

/** A gateway in front of `upstreamUrl` with an answer budget of its own (to read its counts). */
async function gatewayWith(upstreamUrl: string, budget: AnswerBudget, slowClientMs = 60_000) {
  const gw = createGatewayServer({
    mounts: [
      {
        name: "default",
        path: "/mcp",
        gate: createGate({ verifiers: [twoCallers], publicUrl: "http://127.0.0.1/mcp" }),
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
  it("hold at most the caller's share; past it the caller is refused while another is served", async () => {
    const up = await startBigUpstream(jsonResponse);
    const budget = createAnswerBudget({ perCaller: 8 * MiB, total: 64 * MiB });
    const url = await gatewayWith(up.url, budget);
    const alice = await sessionHeaders(url, KEYS.alice);
    // Six 7 MiB answers Alice never reads (more than the kernel's socket buffers take: what is left
    // stays in the gateway until her client reads).
    const unread = Array.from({ length: 6 }, (_, i) => unreadRequest(url, alice, bigCall(100 + i, 7 * MiB)));
    await expect
      .poll(() => up.rpcCalls().filter((c) => c === "tools/call:big").length, { timeout: 5_000 })
      .toBe(6);
    await new Promise((r) => setTimeout(r, 500));
    // What the gateway holds for her is bounded by her share, whatever she asked for.
    expect(budget.heldBy("key:alice")).toBeLessThanOrEqual(8 * MiB);
    expect(budget.heldBy("key:alice")).toBeGreaterThan(0);

    // Bob is served whole, at once.
    const bob = await connectClient(url, KEYS.bob);
    cleanups.push(() => bob.client.close());
    const answer = await bob.client.callTool({ name: "big", arguments: { size: 2 * MiB } });
    expect((answer.content as Array<{ text: string }>)[0]!.text).toHaveLength(2 * MiB);

    // The answers refused to Alice say why: her unread answers (429 -31002 before an answer
    // began; in a stream already open, -31012, as a client too slow to read).
    const seen = await Promise.all(unread.map((u) => u.read()));
    const refused = seen.filter((t) =>
      jsonResponse
        ? t.startsWith("HTTP/1.1 429") && t.includes('"code":-31002') && t.includes("unread answers")
        : t.includes('"code":-31012'),
    );
    expect(refused.length).toBeGreaterThanOrEqual(4);

    // Once her clients leave, her share is whole again.
    for (const u of unread) u.socket.destroy();
    await expect.poll(() => budget.held, { timeout: 3_000 }).toBe(0);
    const again = await rawPost(url, bigCall(7, 1 * MiB), alice);
    expect(again.status).toBe(200);
    expect(again.text.length).toBeGreaterThan(1 * MiB);
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

describe("limits.answerBufferPerCaller in mcpgate serve", () => {
  it("reaches the relay: a caller past its share of unread answers gets 429, another caller is served", async () => {
    const up = await startBigUpstream(true);
    const key = "unread-answers-key-0123456789abcdef";
    const gw = await startTestGateway(
      { upstream: { url: up.url }, limits: { answerBufferPerCaller: 8 * MiB } },
      { MCP_API_KEY: key },
      "warn",
    );
    cleanups.push(() => gw.close());
    const h = await sessionHeaders(gw.url, key);
    const unread = Array.from({ length: 4 }, (_, i) => unreadRequest(gw.url, h, bigCall(10 + i, 7 * MiB)));
    await expect
      .poll(() => up.rpcCalls().filter((c) => c === "tools/call:big").length, { timeout: 5_000 })
      .toBe(4);
    await new Promise((r) => setTimeout(r, 500));
    const seen = await Promise.all(unread.map((u) => u.read()));
    expect(seen.filter((t) => t.startsWith("HTTP/1.1 429")).length).toBeGreaterThanOrEqual(2);
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
    expect(budget.heldBy("key:alice")).toBeGreaterThan(0);
    // Bob's own child answers him whole.
    const bob = await sessionHeaders(gw.url, KEYS.bob);
    const answer = await rawPost(gw.url, bigCall(1, 2 * MiB), bob);
    expect(answer.status).toBe(200);
    expect(answer.text.length).toBeGreaterThan(2 * MiB);
    const seen = await Promise.all(unread.map((u) => u.read()));
    if (accept === "application/json") {
      // Collected answers are refused past the share (429 before the answer begins).
      const refused = seen.filter((t) => t.startsWith("HTTP/1.1 429") && t.includes("unread answers"));
      expect(refused.length).toBeGreaterThanOrEqual(3);
    }
    // (Streams need no refusal: while one of them is not read, the child's output is not read.)
    for (const u of unread) u.socket.destroy();
    await expect.poll(() => budget.held, { timeout: 3_000 }).toBe(0);
  });
});
