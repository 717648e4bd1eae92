import { describe, expect, it } from "vitest";
import { spanUrl } from "../../src/observe/span-url.js";

/** What a span says of a URL: no userinfo, no query, and no run of a path that reads as a key. */
describe("spanUrl", () => {
  const KEY = "3f9a1c2e5b7d9f11aa42";
  it.each([
    [`https://mcp.example.com/k/${KEY}/mcp`, "https://mcp.example.com/k/REDACTED/mcp"],
    [`https://mcp.example.com/key:${KEY}/mcp`, "https://mcp.example.com/key:REDACTED/mcp"],
    [`https://mcp.example.com/t;token=${KEY}`, "https://mcp.example.com/t;REDACTED"],
    [`https://mcp.example.com/sk_live@${KEY}`, "https://mcp.example.com/sk_live@REDACTED"],
    ["https://mcp.example.com/a/AbcdefghijklmnopqrstuvwxYZ/mcp", "https://mcp.example.com/a/REDACTED/mcp"],
    [`https://mcp.example.com/${KEY}.${KEY}`, "https://mcp.example.com/REDACTED.REDACTED"],
    ["https://u:p@mcp.example.com/mcp?token=abc#x", "https://mcp.example.com/mcp"],
  ])("scrubs %s", (raw, full) => {
    expect(spanUrl(raw)?.full).toBe(full);
    expect(spanUrl(raw)?.full).not.toContain(KEY);
  });

  it.each([
    "https://mcp.example.com/mcp",
    "https://mcp.example.com/v1/2025-06-18/notes/mcp",
    "https://mcp.example.com/notifications/stream",
    "https://login.example.com/oauth2/v2.0/token",
  ])("keeps %s readable", (raw) => {
    expect(spanUrl(raw)?.full).toBe(raw);
  });

  it("gives the host and port apart, and nothing for what is not a URL", () => {
    expect(spanUrl("http://127.0.0.1:3001/mcp")).toEqual({
      full: "http://127.0.0.1:3001/mcp",
      host: "127.0.0.1",
      port: 3001,
    });
    expect(spanUrl("not a url")).toBeUndefined();
  });
});
