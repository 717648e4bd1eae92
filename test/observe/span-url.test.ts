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

  it.each([
    ["https://sk-live-abcdef0123456789abcdef.tenant.example.com/mcp", "REDACTED.tenant.example.com"],
    [`https://${KEY}.mcp.example.com/mcp`, "REDACTED.mcp.example.com"],
    ["https://3f9a1c2e-5b7d-4f11-aa42-1234567890ab.mcp.example.com/mcp", "REDACTED.mcp.example.com"],
    ["https://tenant.abcdefghijklmnopqrstuvwxyz.example.com/mcp", "tenant.REDACTED.example.com"],
    ["https://sk-live-abcdef0123456789abcdef.example.com:8443/k/mcp", "REDACTED.example.com"],
    // A key cut into short groups, or into long numbers.
    ["https://3f9a-1c2e-5b7d-4f11-9a2b-0c1d.tenant.example.com/mcp", "REDACTED.tenant.example.com"],
    ["https://123456789012345-678901234567890.example.com/mcp", "REDACTED.example.com"],
  ])("scrubs a key in the host name of %s, in url.full and server.address", (raw, host) => {
    const url = spanUrl(raw);
    expect(url?.host).toBe(host);
    expect(url?.full.startsWith(`https://${host}`)).toBe(true);
    expect(url?.full).not.toMatch(/0123456789|3f9a1c2e|abcdefghijklmnop/);
  });

  it("keeps the port after a scrubbed host", () => {
    expect(spanUrl("https://sk-live-abcdef0123456789abcdef.example.com:8443/mcp")).toEqual({
      full: "https://REDACTED.example.com:8443/mcp",
      host: "REDACTED.example.com",
      port: 8443,
    });
  });

  it.each([
    ["https://mcp.example.com/mcp", "mcp.example.com"],
    ["http://127.0.0.1:3001/mcp", "127.0.0.1"],
    ["http://[::1]:3001/mcp", "[::1]"],
    ["http://my-service-01.internal/mcp", "my-service-01.internal"],
    [
      "https://authentication-service-production.example.com/mcp",
      "authentication-service-production.example.com",
    ],
    ["http://ip-172-31-22-145.ec2.internal/mcp", "ip-172-31-22-145.ec2.internal"],
    ["http://ec2-54-123-45-67.compute-1.amazonaws.com/mcp", "ec2-54-123-45-67.compute-1.amazonaws.com"],
    ["https://project-123456789012.example.com/mcp", "project-123456789012.example.com"],
    ["https://k8s-node-a1b2-production.example.com/mcp", "k8s-node-a1b2-production.example.com"],
    ["https://xn--eckwd4c7cu47r2wfqw7a0ecl32k.jp/mcp", "xn--eckwd4c7cu47r2wfqw7a0ecl32k.jp"],
  ])("keeps the ordinary host name of %s", (raw, host) => {
    expect(spanUrl(raw)?.host).toBe(host);
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
