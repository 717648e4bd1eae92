import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMonitor, type MonitorSnapshot, type TargetStatus } from "../../src/probe/monitor.js";
import { resolveMonitorConfig } from "../../src/probe/monitor-config.js";
import { renderStatusPage, type StatusServer, startStatusServer } from "../../src/probe/status-page.js";
import { openHistoryStore } from "../../src/stores/probe-history.js";
import { closedPortUrl, type SdkTestServer, startSdkServer } from "./helpers/servers.js";

const CHROMIUM = "/usr/bin/chromium";
const OUT = resolve(import.meta.dirname, "../../test-output");
const KEY = "mcpg_StatusPg_statusPageSecretNeverOnThePage0000";

function target(overrides: Partial<TargetStatus>): TargetStatus {
  return {
    name: "t",
    url: "http://127.0.0.1/mcp",
    status: "up",
    since: 0,
    lastCheckedAt: 0,
    latencyMs: 10,
    httpStatus: 200,
    error: null,
    challenge: "ok",
    tools: 1,
    schemaHash: "ab".repeat(32),
    steps: [],
    uptime24h: 100,
    uptime7d: 100,
    certExpiresAt: null,
    intervalMs: 60_000,
    latency: [],
    events: [],
    ...overrides,
  };
}

describe("renderStatusPage", () => {
  it("escapes text that came from a server", () => {
    const snap: MonitorSnapshot = {
      generatedAt: 1_000_000,
      targets: [
        target({
          status: "protocol_error",
          error: `initialize answered <script>alert(1)</script> "x"`,
          events: [
            { target: "t", at: 0, kind: "state_change", message: "<img src=x onerror=alert(1)>", detail: {} },
          ],
        }),
      ],
    };
    const html = renderStatusPage(snap);
    expect(html).not.toContain("<script>");
    expect(html).not.toContain("<img");
    expect(html).toContain("&#60;script&#62;alert(1)&#60;/script&#62;");
    expect(html).toContain("1 of 1 endpoints down");
  });

  it("draws failed checks as red marks and up checks as a line", () => {
    const now = 90_000_000;
    const html = renderStatusPage({
      generatedAt: now,
      targets: [
        target({
          latency: [
            { at: now - 3000, latencyMs: 20, status: "up" },
            { at: now - 2000, latencyMs: 0, status: "timeout" },
            { at: now - 1000, latencyMs: 40, status: "up" },
          ],
        }),
      ],
    });
    expect(html.match(/<polyline points="([^"]+)"/)?.[1]?.split(" ")).toHaveLength(2);
    expect(html.match(/class="down"/g)).toHaveLength(1);
    expect(html).toContain("3 checks, 1 failed");
  });
});

describe.skipIf(!existsSync(CHROMIUM))("status page in headless Chromium", () => {
  let up: SdkTestServer;
  let status: StatusServer;
  let browser: Browser;

  beforeAll(async () => {
    up = await startSdkServer({ key: KEY });
    const config = resolveMonitorConfig(
      {
        targets: [
          { name: "production api", url: up.url, keyEnv: "PROBE_KEY", interval: "1s" },
          { name: "staging", url: await closedPortUrl(), timeout: "2s", interval: "1s" },
        ],
        history: "memory:",
      },
      { PROBE_KEY: KEY },
    );
    const monitor = createMonitor({ config, history: await openHistoryStore("memory:") });
    for (let i = 0; i < 4; i++) await monitor.runOnce();
    status = await startStatusServer(monitor, { host: "127.0.0.1", port: 0 });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  }, 30_000);

  afterAll(async () => {
    await browser?.close();
    await status?.close();
    await up?.close();
  });

  it("shows every target, its state, the last error and a latency chart, with JavaScript off", async () => {
    const context = await browser.newContext({
      javaScriptEnabled: false,
      viewport: { width: 1100, height: 900 },
    });
    const page = await context.newPage();
    const res = await page.goto(status.url);
    expect(res?.status()).toBe(200);
    await expect(page.title()).resolves.toBe("1 of 2 endpoints down · mcpgate monitor");
    const prod = page.locator("section.target", { hasText: "production api" });
    const staging = page.locator("section.target", { hasText: "staging" });
    expect(await prod.getAttribute("data-status")).toBe("up");
    expect(await staging.getAttribute("data-status")).toBe("unreachable");
    expect(await prod.locator(".badge").textContent()).toBe("Up");
    expect(await staging.locator(".badge").textContent()).toBe("Unreachable");
    expect(await staging.locator(".error").textContent()).toContain("connection refused");
    expect(await page.locator("svg.chart").count()).toBe(2);
    expect(await prod.locator("svg.chart polyline").count()).toBe(1);
    expect(await staging.locator("svg.chart line.down").count()).toBe(4);
    const box = await prod.locator("svg.chart").boundingBox();
    expect(box?.height).toBeGreaterThan(50);
    expect(await prod.textContent()).toMatch(/Uptime 24 h\s*100 %/);
    expect(await page.content()).not.toContain(KEY);
    mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: join(OUT, "status-page.png"), fullPage: true });
    await context.close();
  });

  it("fits a phone screen without sideways scrolling", async () => {
    const context = await browser.newContext({
      javaScriptEnabled: true,
      viewport: { width: 375, height: 740 },
      isMobile: true,
    });
    const page = await context.newPage();
    await page.goto(status.url);
    // A string expression: the test project has no DOM typings.
    const widths = await page.evaluate<{ scroll: number; view: number }>(
      "({ scroll: document.documentElement.scrollWidth, view: window.innerWidth })",
    );
    expect(widths.scroll).toBeLessThanOrEqual(widths.view);
    await page.screenshot({ path: join(OUT, "status-page-phone.png"), fullPage: true });
    await context.close();
  });
});

if (!existsSync(CHROMIUM)) {
  console.warn(`status page browser tests skipped: ${CHROMIUM} is absent (apt-get install -y chromium)`);
}
