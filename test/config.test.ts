import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { durationMs, loadConfigFile, signingKeyLocation, validateConfig } from "../src/config.js";
import { isMcpGateError } from "../src/core/errors.js";

const dir = mkdtempSync(join(tmpdir(), "mcpgate-config-"));

function write(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe("configuration loader", () => {
  it("reads YAML and JSON by extension, with DESIGN.md defaults", () => {
    const y = loadConfigFile(write("a.yaml", "upstream:\n  url: http://127.0.0.1:3000/mcp\n"), {});
    const j = loadConfigFile(write("a.json", '{"upstream":{"url":"http://127.0.0.1:3000/mcp"}}'), {});
    for (const c of [y, j]) {
      expect(c.listen).toEqual({ host: "127.0.0.1", port: 8080 });
      expect(c.upstream?.url).toBe("http://127.0.0.1:3000/mcp");
      expect(durationMs(c.upstream!.timeout)).toBe(30_000);
      expect(c.limits.maxBody).toBe(4 * 1024 * 1024);
      expect(durationMs(c.sessions.idleTtl)).toBe(30 * 60_000);
    }
  });

  it("interpolates ${VAR} from the environment", () => {
    const c = loadConfigFile(
      write(
        "env.yaml",
        'upstream:\n  url: http://127.0.0.1:3000/mcp\n  headers: { Authorization: "Bearer ${UP_TOKEN}" }\n',
      ),
      {
        UP_TOKEN: "t0k3n",
      },
    );
    expect(c.upstream?.headers.Authorization).toBe("Bearer t0k3n");
  });

  it("names an unset environment variable without printing any value", () => {
    try {
      validateConfig({ upstream: { url: "http://x/mcp", headers: { a: "${NOPE_NOT_SET}" } } }, {});
      expect.unreachable();
    } catch (err) {
      expect(isMcpGateError(err, "ERR_CONFIG_INVALID")).toBe(true);
      expect((err as Error).message).toContain("NOPE_NOT_SET");
      expect((err as Error).message).toContain("upstream.headers.a");
    }
  });

  describe("invalid files name the field", () => {
    const cases: Array<[string, unknown, string]> = [
      ["a bad port", { listen: { port: 70000 } }, "listen.port"],
      ["an unknown field", { upstream: { url: "http://x/mcp" }, colour: "red" }, "colour"],
      ["a bad duration", { upstream: { url: "http://x/mcp", timeout: "soon" } }, "upstream.timeout"],
      [
        "a bad scope",
        { policy: { tools: [{ match: "*", scopes: ["has space"] }] } },
        "policy.tools.0.scopes.0",
      ],
      ["both url and command", { upstream: { url: "http://x/mcp", command: ["node"] } }, "upstream"],
      ["a bad onDenied", { policy: { onDenied: "explode" } }, "policy.onDenied"],
    ];
    for (const [name, raw, field] of cases) {
      it(`rejects ${name}`, () => {
        expect(() => validateConfig(raw, {})).toThrowError(new RegExp(field.replace(/\./g, "\\.")));
      });
    }
  });

  it("reports a missing file and broken YAML with ERR_ codes", () => {
    expect(() => loadConfigFile(join(dir, "missing.yaml"), {})).toThrowError(/cannot read config file/);
    expect(() => loadConfigFile(write("bad.yaml", "upstream: [unclosed\n"), {})).toThrowError(
      /not valid YAML/,
    );
  });

  it("freezes the resolved configuration", () => {
    const c = validateConfig({ upstream: { url: "http://127.0.0.1:1/mcp" } }, {});
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.listen)).toBe(true);
  });
});

describe("signingKeyLocation", () => {
  it("names one store for assertions, the authorization server's tokens and keys rotate-signing", () => {
    const base = { upstream: { url: "http://127.0.0.1:3000/mcp" } };
    expect(signingKeyLocation(validateConfig(base))).toBe("sqlite:./mcpgate.db");
    expect(
      signingKeyLocation(validateConfig({ ...base, auth: { apiKeys: { store: "sqlite:/k.db" } } })),
    ).toBe("sqlite:/k.db");
    const withAs = {
      ...base,
      auth: { apiKeys: { store: "sqlite:/k.db" } },
      authServer: { store: "sqlite:/as.db", login: { apiKey: {} } },
    };
    expect(signingKeyLocation(validateConfig(withAs))).toBe("sqlite:/as.db");
    expect(signingKeyLocation(validateConfig({ ...withAs, identity: { keyStore: "sqlite:/id.db" } }))).toBe(
      "sqlite:/id.db",
    );
  });
});
