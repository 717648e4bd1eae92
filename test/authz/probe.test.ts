import { describe, expect, it } from "vitest";
import { isProbeAllowedMethod } from "../../src/authz/probe.js";

describe("isProbeAllowedMethod", () => {
  it("allows exactly the read-only discovery and listing methods", () => {
    for (const m of [
      "initialize",
      "notifications/initialized",
      "ping",
      "server/discover",
      "tools/list",
      "resources/list",
      "prompts/list",
    ]) {
      expect(isProbeAllowedMethod(m)).toBe(true);
    }
  });

  it("refuses calls, reads, writes and anything not on the list", () => {
    for (const m of [
      "tools/call",
      "resources/read",
      "resources/subscribe",
      "resources/templates/list",
      "prompts/get",
      "completion/complete",
      "logging/setLevel",
      "notifications/cancelled",
      "sampling/createMessage",
      "Tools/List",
      "tools/list ",
      "tools/listx",
      "",
    ]) {
      expect(isProbeAllowedMethod(m)).toBe(false);
    }
  });

  it("refuses a method that is not a string", () => {
    expect(isProbeAllowedMethod(undefined)).toBe(false);
    expect(isProbeAllowedMethod(["tools/list"])).toBe(false);
  });
});
