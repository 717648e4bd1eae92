import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findFreePort } from "../../src/gateway/free-port.js";
import { connectClient } from "../helpers/client.js";

const dir = mkdtempSync(join(tmpdir(), "mcpgate-demo-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("mcpgate demo (npm start)", () => {
  it("prints a working key and a curl command that initializes through the gateway", async () => {
    const port = await findFreePort("127.0.0.1");
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "src/cli/main.ts",
        "demo",
        "--store",
        `sqlite:${join(dir, "demo.db")}`,
        "--port",
        String(port),
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    try {
      for (let i = 0; i < 150 && !out.includes("Press Ctrl+C"); i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(out).toContain("Press Ctrl+C");
      const key = /\b(mcpg_[A-Za-z0-9]{8}_[A-Za-z0-9]+)\b/.exec(out)?.[1];
      expect(key).toBeDefined();
      // The key is printed exactly where the commands use it.
      const url = /gateway\s+(http:\/\/127\.0\.0\.1:\d+\/mcp)/.exec(out)?.[1] ?? "";
      expect(url).toBe(`http://127.0.0.1:${port}/mcp`);
      // Run the printed curl command as printed.
      const curlLines = out.split("\n").filter((l) => /^\s+(curl |-H |-d )/.test(l));
      const curl = curlLines.map((l) => l.trim().replace(/\\$/, "")).join(" ");
      expect(curl.startsWith("curl ")).toBe(true);
      const answer = execFileSync("bash", ["-c", curl], { encoding: "utf8", timeout: 10_000 });
      expect(answer).toContain('"serverInfo":{"name":"mcpgate-demo"');
      // The key also works with the SDK client, and the demo tools are there.
      const { client } = await connectClient(url, key!);
      expect((await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })).content).toEqual([
        { type: "text", text: "5" },
      ]);
      await client.close();
      // Without the key: 401.
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      expect(res.status).toBe(401);
    } finally {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
  });
});
