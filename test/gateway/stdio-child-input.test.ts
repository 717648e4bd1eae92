import { describe, expect, it } from "vitest";
import { buildChildEnv, STDIN_BACKLOG_MAX, spawnStdioChild } from "../../src/gateway/stdio/child-process.js";
import { createLogger } from "../../src/observe/logger.js";
import { INIT, rawPost } from "../helpers/client.js";
import { connectClient, KEYS, startStdioGateway } from "./stdio-helpers.js";

/**
 * A stdio child that does not read its input (it is stuck writing output its client does not read,
 * or it is simply busy) must not make the gateway hold whatever callers keep sending it.
 */
describe("a stdio child's input is bounded", () => {
  it("refuses to queue more than STDIN_BACKLOG_MAX for a child that does not read", async () => {
    const lines: string[] = [];
    const child = spawnStdioChild({
      // Never reads stdin.
      command: [process.execPath, "-e", "setInterval(() => {}, 1_000)"],
      env: buildChildEnv(process.env),
      logger: createLogger({ level: "warn", destination: { write: (l: string) => lines.push(l) } }),
      tag: "test",
      onMessage: () => {},
      onExit: () => {},
    });
    try {
      const message = JSON.stringify({
        jsonrpc: "2.0",
        method: "notifications/x",
        params: { pad: "p".repeat(1 << 20) },
      });
      let accepted = 0;
      for (let i = 0; i < 64 && child.send(message); i++) accepted++;
      expect(child.inputBacklogged).toBe(true);
      // At most the bound, one message past it, and what the pipe itself took.
      expect(accepted * message.length).toBeLessThan(STDIN_BACKLOG_MAX + 2 * message.length + (1 << 20));
      expect(accepted).toBeLessThan(64);
    } finally {
      await child.terminate(500);
    }
  });
});

describe("a stdio session whose child stops reading, end to end", () => {
  it("answers 503 once 8 MiB wait for the child, queues nothing more, and serves other sessions", async () => {
    const gw = await startStdioGateway();
    try {
      const auth = { authorization: `Bearer ${KEYS.alice}` };
      const init = await rawPost(gw.url, INIT, auth);
      const h = {
        ...auth,
        "mcp-session-id": init.headers.get("mcp-session-id")!,
        "mcp-protocol-version": "2025-06-18",
      };
      expect((await rawPost(gw.url, { jsonrpc: "2.0", method: "notifications/initialized" }, h)).status).toBe(
        202,
      );
      const deaf = await rawPost(
        gw.url,
        { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "deaf", arguments: {} } },
        h,
      );
      expect(deaf.text).toContain("deaf from now on");
      // 1 MiB notifications, at most 24 of them: the first ones are queued (202), then 503.
      const note = { jsonrpc: "2.0", method: "notifications/x", params: { pad: "p".repeat(1 << 20) } };
      const statuses: number[] = [];
      let refusal = "";
      for (let i = 0; i < 24 && !statuses.includes(503); i++) {
        const r = await rawPost(gw.url, note, h);
        statuses.push(r.status);
        if (r.status === 503) refusal = r.text;
      }
      expect(statuses.at(-1), JSON.stringify(statuses)).toBe(503);
      const accepted = statuses.filter((s) => s === 202).length;
      // 8 MiB queued, plus what the pipe itself took (64 KiB) and the one that crossed the bound.
      expect(accepted).toBeGreaterThanOrEqual(8);
      expect(accepted).toBeLessThanOrEqual(10);
      expect(JSON.parse(refusal)).toMatchObject({ error: { code: -31009 } });
      expect(refusal).toContain("not reading its input");
      // Requests are refused too, at once (nothing is queued for a child that does not read).
      const ping = await rawPost(gw.url, { jsonrpc: "2.0", id: 3, method: "ping" }, h);
      expect(ping.status).toBe(503);
      // Another caller's session has its own child, and is served.
      const { client } = await connectClient(gw.url, KEYS.bob);
      expect(await client.ping()).toEqual({});
      await client.close();
    } finally {
      await gw.close();
    }
  }, 30_000);

  it("writes a batch whole or not at all: past the bound it is 503, never cut part-way (2025-03-26)", async () => {
    const gw = await startStdioGateway();
    try {
      const auth = { authorization: `Bearer ${KEYS.alice}` };
      const init = await rawPost(
        gw.url,
        { ...INIT, params: { ...INIT.params, protocolVersion: "2025-03-26" } },
        auth,
      );
      const h = {
        ...auth,
        "mcp-session-id": init.headers.get("mcp-session-id")!,
        "mcp-protocol-version": "2025-03-26",
      };
      await rawPost(gw.url, { jsonrpc: "2.0", method: "notifications/initialized" }, h);
      const tool = (id: number, name: string, args: Record<string, unknown> = {}) =>
        rawPost(gw.url, { jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } }, h);
      await tool(2, "deaf", { ms: 1_500 });
      // Batches of three 1.2 MiB notifications while the child reads nothing: the bound (8 MiB) is
      // checked before each batch, which is then written whole.
      const note = { jsonrpc: "2.0", method: "notifications/x", params: { pad: "p".repeat(1_200_000) } };
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await rawPost(gw.url, [note, note, note], h)).status);
      expect(statuses).toEqual([202, 202, 202, 503]);
      // Once the child reads again it has heard the three whole batches, nothing of the refused one
      // (a batch cut part-way would have left 7, and the client's retry would repeat two of them).
      let heard = "";
      for (let i = 0; i < 100 && heard !== "9"; i++) {
        await new Promise((r) => setTimeout(r, 100));
        heard = /"text":"(\d+)"/.exec((await tool(10 + i, "heard")).text)?.[1] ?? "";
      }
      expect(heard).toBe("9");
    } finally {
      await gw.close();
    }
  }, 30_000);
});
