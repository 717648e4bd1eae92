import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/observe/logger.js";
import { captureStream } from "../helpers/gateway.js";

describe("logger redaction", () => {
  it("removes credential headers, configured secret headers and secret-named fields at the logger", () => {
    const lines: string[] = [];
    const log = createLogger({
      level: "debug",
      destination: captureStream(lines),
      redactHeaders: ["X-Upstream-Token"],
    });
    log.debug(
      {
        req: {
          headers: {
            authorization: "Bearer sekret-1",
            cookie: "sid=sekret-2",
            "x-api-key": "sekret-3",
            "x-upstream-token": "sekret-4",
            "proxy-authorization": "Basic sekret-5",
            accept: "application/json",
          },
        },
        headers: { "set-cookie": "a=sekret-6" },
        upstream: { headers: { authorization: "Bearer sekret-7" } },
        token: "sekret-8",
        config: { clientSecret: "sekret-9" },
      },
      "request received",
    );
    const text = lines.join("\n");
    expect(text).not.toMatch(/sekret/);
    const entry = JSON.parse(lines[0]!);
    expect(entry.req.headers.authorization).toBe("[redacted]");
    expect(entry.req.headers.accept).toBe("application/json");
    expect(entry.msg).toBe("request received");
  });

  it("logs a session id only as a short prefix", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "debug", destination: captureStream(lines) });
    const sid = "4f1c9e0a-7b2d-4c55-9a61-0d3e5b7c8f90";
    log.debug({ req: { headers: { "mcp-session-id": sid } } }, "request");
    expect(lines.join("\n")).not.toContain(sid);
    expect(JSON.parse(lines[0]!).req.headers["mcp-session-id"]).toBe("4f1c9e0a…");
  });

  it("matches header names without regard to case, never changes the caller's objects, and keeps an Error's message", () => {
    const lines: string[] = [];
    const log = createLogger({
      level: "debug",
      destination: captureStream(lines),
      redactHeaders: ["X-Custom"],
    });
    const headers = { Authorization: "Bearer sekret-a", "X-CUSTOM": "sekret-b", Accept: "text/plain" };
    const err = Object.assign(new Error("boom"), { token: "sekret-c" });
    const fields = { headers, upstream: { apiKey: "sekret-d", name: "notes" }, err };
    log.warn(fields, "with secrets");
    expect(lines.join("\n")).not.toMatch(/sekret/);
    const entry = JSON.parse(lines[0]!);
    expect(entry.headers).toEqual({
      Authorization: "[redacted]",
      "X-CUSTOM": "[redacted]",
      Accept: "text/plain",
    });
    expect(entry.upstream).toEqual({ apiKey: "[redacted]", name: "notes" });
    expect(entry.err.message).toBe("boom");
    // The caller's objects are untouched (copy on write).
    expect(headers.Authorization).toBe("Bearer sekret-a");
    expect(fields.upstream.apiKey).toBe("sekret-d");
    expect(err.token).toBe("sekret-c");
  });

  it("redacts to the documented depth: the top level and one level down", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "debug", destination: captureStream(lines) });
    log.info({ password: "sekret-1", a: { secret: "sekret-2", headers: { cookie: "sekret-3" } } }, "x");
    const entry = JSON.parse(lines[0]!);
    expect(entry.password).toBe("[redacted]");
    expect(entry.a).toEqual({ secret: "[redacted]", headers: { cookie: "[redacted]" } });
    // A line with nothing to remove is written as given.
    log.info({ requestId: "r1", status: 200, audit: { type: "session_bound", actor: "key:abc" } }, "y");
    expect(JSON.parse(lines[1]!)).toMatchObject({
      requestId: "r1",
      status: 200,
      audit: { actor: "key:abc" },
    });
  });

  it("redacts a child logger's bindings, and never throws on a frozen instance or a getter", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "debug", destination: captureStream(lines) });
    const child = log.child({ token: "sekret-child", headers: { authorization: "Bearer sekret-h" } });
    child.info({ requestId: "r" }, "from a child");
    class Holder {
      token = "sekret-frozen";
      get apiKey() {
        return "sekret-getter";
      }
    }
    expect(() => log.info({ a: Object.freeze(new Holder()) }, "frozen")).not.toThrow();
    const text = lines.join("\n");
    expect(text).not.toMatch(/sekret/);
    expect(JSON.parse(lines[0]!)).toMatchObject({ token: "[redacted]", requestId: "r" });
    expect(JSON.parse(lines[1]!).a).toEqual({ token: "[redacted]" });
  });

  it("writes nothing below its level", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "info", destination: captureStream(lines) });
    log.debug("hidden");
    log.info("shown");
    expect(lines).toHaveLength(1);
  });
});
