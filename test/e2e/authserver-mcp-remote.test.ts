import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort } from "../../src/gateway/free-port.js";
import { launchBrowser } from "../authserver/browser.js";
import { type KeyLoginGateway, startKeyLoginGateway } from "../authserver/gateway-fixture.js";
import type { TestGateway } from "../helpers/gateway.js";

/**
 * `mcp-remote` (the stdio bridge many desktop clients use for remote servers), pinned, against a
 * key-only deployment made reachable by `authServer.login.apiKey`: the "Dynamic Client
 * Registration rejected (HTTP 404)" becomes a sign-in page and a working tool call.
 */

let setup: KeyLoginGateway;
let dir: string;
let gw: TestGateway;
let browser: Browser;
let key: string;

beforeAll(async () => {
  setup = await startKeyLoginGateway(["desktop user"]);
  ({ dir, gw } = setup);
  key = setup.keys[0]!.key;
  browser = await launchBrowser();
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await setup?.close();
});

describe("mcp-remote through the gateway's own authorization server", () => {
  it("registers, sends the person to the key login and consent pages, and relays a tool call", async () => {
    const callbackPort = await findFreePort("127.0.0.1");
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        join(process.cwd(), "node_modules/mcp-remote/dist/proxy.js"),
        gw.url,
        String(callbackPort),
        "--allow-http",
      ],
      env: {
        PATH: process.env.PATH ?? "",
        HOME: dir,
        MCP_REMOTE_CONFIG_DIR: join(dir, "mcp-auth"),
        // mcp-remote opens a browser with xdg-open; /bin/true "opens" it, and Chromium below does the rest.
        BROWSER: "/bin/true",
      },
      stderr: "pipe",
    });
    let log = "";
    transport.stderr?.on("data", (d) => {
      log += String(d);
    });
    const client = new Client({ name: "desktop", version: "1" });
    const connected = client.connect(transport);
    try {
      for (let i = 0; i < 200 && !/authorize this client by visiting:\s*\n(\S+)/.test(log); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const url = /authorize this client by visiting:\s*\n(\S+)/.exec(log)?.[1];
      expect(url, log).toBeDefined();
      expect(url!.startsWith(`${new URL(gw.url).origin}/oauth/authorize?`)).toBe(true);
      const page = await browser.newPage();
      await page.goto(url!);
      await page.fill('input[name="key"]', key);
      await page.click('button[type="submit"]');
      await page.waitForSelector('button[value="approve"]');
      expect(await page.textContent("main")).toContain("localhost");
      await page.click('button[value="approve"]');
      await page.waitForURL((u) => u.port === String(callbackPort));
      await page.close();
      await connected;
      const result = await client.callTool({ name: "add", arguments: { a: 20, b: 22 } });
      expect(result.content).toEqual([{ type: "text", text: "42" }]);
      expect(log).not.toContain(key);
    } finally {
      await client.close().catch(() => {});
    }
  }, 60_000);
});
