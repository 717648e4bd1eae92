import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findFreePort } from "../../src/gateway/free-port.js";
import { launchBrowser } from "../authserver/browser.js";

const dir = mkdtempSync(join(tmpdir(), "mcpgate-demo-oauth-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("mcpgate demo --oauth", () => {
  it("runs the whole flow on one machine: the printed URL, the printed key, a browser, a tool result", async () => {
    const port = await findFreePort("127.0.0.1");
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "src/cli/main.ts",
        "demo",
        "--oauth",
        "--store",
        `sqlite:${join(dir, "demo.db")}`,
        "--port",
        String(port),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    const browser = await launchBrowser();
    try {
      const wait = async (text: string) => {
        for (let i = 0; i < 300 && !out.includes(text); i++) await new Promise((r) => setTimeout(r, 100));
        expect(out).toContain(text);
      };
      await wait("/oauth/authorize?");
      const key = /\b(mcpg_[A-Za-z0-9]{8}_[A-Za-z0-9]+)\b/.exec(out)![1]!;
      const url = /(http:\/\/127\.0\.0\.1:\d+\/oauth\/authorize\?\S+)/.exec(out)![1]!;
      expect(url.startsWith(`http://127.0.0.1:${port}/`)).toBe(true);
      const page = await browser.newPage();
      await page.goto(url);
      await page.fill('input[name="key"]', key);
      await page.click('button[type="submit"]');
      await page.click('button[value="approve"]');
      await wait("Press Ctrl+C");
      expect(out).toContain("got: 5");
      expect(out).toMatch(/\d+ ms of protocol/);
    } finally {
      await browser.close();
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  }, 60_000);
});
