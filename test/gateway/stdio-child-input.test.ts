import { describe, expect, it } from "vitest";
import { buildChildEnv, STDIN_BACKLOG_MAX, spawnStdioChild } from "../../src/gateway/stdio/child-process.js";
import { createLogger } from "../../src/observe/logger.js";

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
