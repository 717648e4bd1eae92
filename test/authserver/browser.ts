import { type Browser, chromium } from "playwright-core";

/** Debian's Chromium, headless, as every browser test in this repository runs it. */
export const CHROMIUM = process.env.MCPGATE_TEST_CHROMIUM ?? "/usr/bin/chromium";

/** Launch headless Chromium with no background traffic. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
      "--disable-quic",
      "--disable-sync",
    ],
  });
}
