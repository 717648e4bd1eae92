import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfigFile, resolveUpstreams, validateConfig } from "../../src/config.js";

const dir = mkdtempSync(join(tmpdir(), "mcpgate-upstreams-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const notes = { name: "notes", path: "/notes/mcp", url: "http://127.0.0.1:3001/mcp" };
const files = { name: "files", path: "/files/mcp", command: ["node", "files.js"] };
const invalid = (raw: unknown) => {
  try {
    validateConfig(raw, null);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("expected the configuration to be refused");
};

describe("upstreams: and identity: (DESIGN.md §9)", () => {
  it("accepts several upstreams, each with its own policy, rate limit and identity", () => {
    const c = validateConfig(
      {
        publicUrl: "https://mcp.example.com",
        identity: { issuer: "https://mcp.example.com", ttl: "2m", alg: "EdDSA" },
        upstreams: [
          {
            ...notes,
            identity: { mode: "assertion" },
            policy: { tools: [{ match: "delete_*", scopes: ["admin"] }] },
            rateLimit: { perPrincipal: { limit: 10, window: "1m" } },
          },
          { ...files, identity: { mode: "assertion", header: "X-Caller-Identity" } },
        ],
      },
      null,
    );
    expect(c.upstreams?.map((u) => u.name)).toEqual(["notes", "files"]);
    expect(c.upstreams?.[0]?.timeout).toBe("30s");
    expect(c.upstreams?.[0]?.policy?.default).toBe("deny");
    expect(c.upstreams?.[1]?.identity?.header).toBe("X-Caller-Identity");
    expect(c.identity?.alg).toBe("EdDSA");
  });

  it("keeps the one-upstream shorthand working unchanged", () => {
    const c = validateConfig({ upstream: { url: "http://127.0.0.1:3000/mcp" } }, null);
    expect(c.upstream?.url).toBe("http://127.0.0.1:3000/mcp");
    expect(c.upstreams).toBeUndefined();
  });

  describe("refused, naming the field", () => {
    it("duplicate names and duplicate paths (a trailing slash is the same path)", () => {
      expect(invalid({ upstreams: [notes, { ...files, name: "notes" }] })).toMatch(
        /upstreams\.1\.name: duplicate upstream name "notes"/,
      );
      expect(invalid({ upstreams: [notes, { ...files, path: "/notes/mcp/" }] })).toMatch(
        /upstreams\.1\.path: duplicate upstream path/,
      );
    });

    it("one top-level assertion audience for several upstreams (each could replay another's)", () => {
      expect(
        invalid({
          identity: { mode: "assertion", audience: "urn:shared" },
          upstreams: [notes, files],
        }),
      ).toMatch(/identity\.audience: with several upstreams/);
    });

    it("token exchange with several OAuth issuers (a caller's token, and the gateway's client secret, would reach an issuer not its own)", () => {
      expect(
        invalid({
          auth: { issuers: [{ issuer: "https://a.example.com" }, { issuer: "https://b.example.com" }] },
          upstreams: [
            {
              ...notes,
              identity: { mode: "token-exchange", clientId: "gw", clientSecret: "s3cret-value-xyz" },
            },
          ],
        }),
      ).toMatch(/token-exchange works with exactly one OAuth issuer/);
    });

    it("upstream and upstreams together", () => {
      expect(invalid({ upstream: { url: notes.url }, upstreams: [notes] })).toMatch(/not both/);
    });

    it("a bad name, a path owned by the gateway, or both url and command", () => {
      expect(invalid({ upstreams: [{ ...notes, name: "Notes_1" }] })).toMatch(/upstreams\.0\.name/);
      expect(invalid({ upstreams: [{ ...notes, path: "/.well-known/jwks.json" }] })).toMatch(
        /belong to the gateway/,
      );
      expect(invalid({ upstreams: [{ ...notes, path: "notes" }] })).toMatch(/absolute URL path/);
      expect(invalid({ upstreams: [{ ...notes, command: ["x"] }] })).toMatch(/exactly one/);
      expect(invalid({ upstreams: [{ name: "x", path: "/x" }] })).toMatch(/exactly one/);
    });

    it("envAllow naming a secret of the gateway's own", () => {
      for (const name of ["MCPGATE_SIGNING_KEY_SECRET", "MCPGATE_KEY_PEPPER", "MCP_API_KEY"])
        expect(invalid({ upstreams: [{ ...files, envAllow: ["HOME", name] }] })).toMatch(
          /upstreams\.0\.envAllow\.1.*a child never gets it/,
        );
      expect(validateConfig({ upstreams: [{ ...files, envAllow: ["GITHUB_TOKEN"] }] }, null)).toBeTruthy();
    });

    it("maxInFlightPerCaller on a stdio upstream (it has no connection pool to share)", () => {
      expect(invalid({ upstreams: [{ ...files, maxInFlightPerCaller: 4 }] })).toMatch(
        /upstreams\.0\.maxInFlightPerCaller.*maxChildrenPerPrincipal/,
      );
      expect(invalid({ upstream: { command: ["node", "x.js"], maxInFlightPerCaller: 4 } })).toMatch(
        /HTTP upstreams/,
      );
      expect(validateConfig({ upstream: { url: notes.url, maxInFlightPerCaller: 4 } }, null)).toBeTruthy();
    });

    it("streamIdleTimeout on a stdio upstream (its answers hold no connection), or one that is not a duration", () => {
      expect(invalid({ upstreams: [{ ...files, streamIdleTimeout: "1m" }] })).toMatch(
        /upstreams\.0\.streamIdleTimeout.*HTTP upstreams/,
      );
      expect(invalid({ upstream: { url: notes.url, streamIdleTimeout: "soon" } })).toMatch(
        /upstream\.streamIdleTimeout.*invalid duration/,
      );
      expect(validateConfig({ upstream: { url: notes.url, streamIdleTimeout: "0s" } }, null)).toBeTruthy();
    });

    it("an identity header that upstream.headers already sets (any case)", () => {
      expect(
        invalid({
          upstreams: [
            { ...notes, headers: { Authorization: "Bearer static" }, identity: { mode: "assertion" } },
          ],
        }),
      ).toMatch(/upstreams\.0\.headers: identity header "authorization" is already set/);
      expect(
        invalid({
          identity: { mode: "assertion", header: "X-Who" },
          upstream: { url: notes.url, headers: { "x-who": "me" } },
        }),
      ).toMatch(/upstream\.headers: identity header "x-who"/);
      // No clash when the identity goes elsewhere, or when identity is off.
      validateConfig(
        {
          upstreams: [
            {
              ...notes,
              headers: { Authorization: "Bearer s" },
              identity: { mode: "assertion", header: "X-Who" },
            },
          ],
        },
        null,
      );
      validateConfig({ upstreams: [{ ...notes, headers: { Authorization: "Bearer s" } }] }, null);
    });

    it("an identity header that framing or MCP owns", () => {
      for (const header of ["Host", "mcp-session-id", "Cookie", "Content-Length"])
        expect(invalid({ identity: { mode: "assertion", header } })).toMatch(/cannot carry the identity/);
      expect(invalid({ identity: { mode: "assertion", header: "bad header" } })).toMatch(
        /invalid header name/,
      );
    });

    it("token-exchange for a stdio upstream, or without client credentials or an issuer", () => {
      const tx = {
        mode: "token-exchange",
        clientId: "gw",
        clientSecret: "s",
        tokenEndpoint: "https://as.example.com/token",
      };
      expect(invalid({ upstreams: [{ ...files, identity: tx }] })).toMatch(/needs an HTTP upstream/);
      expect(invalid({ upstreams: [{ ...notes, identity: { ...tx, clientSecret: undefined } }] })).toMatch(
        /clientId and identity.clientSecret/,
      );
      expect(invalid({ upstreams: [{ ...notes, identity: { ...tx, tokenEndpoint: undefined } }] })).toMatch(
        /tokenEndpoint or an auth.jwt issuer/,
      );
      validateConfig(
        {
          auth: { jwt: { issuer: "https://as.example.com" } },
          upstreams: [{ ...notes, identity: { ...tx, tokenEndpoint: undefined } }],
        },
        null,
      );
    });

    it("an assertion lifetime over one hour", () => {
      expect(invalid({ identity: { ttl: "2h" } })).toMatch(/identity\.ttl must be between 1s and 1h/);
    });
  });

  it("resolves what is mounted: entries with their own policy/identity over the top-level ones, or the shorthand", () => {
    const top = { tools: [{ match: "*", scopes: ["top"] }] };
    const c = validateConfig(
      {
        policy: top,
        identity: { mode: "assertion", header: "X-Who", ttl: "30s" },
        upstreams: [
          { ...notes, identity: { header: "X-Caller" }, policy: { tools: [] } },
          { ...files, identity: { mode: "none" } },
        ],
      },
      null,
    );
    const [n, f] = resolveUpstreams(c);
    expect(n).toMatchObject({
      name: "notes",
      path: "/notes/mcp",
      shorthand: false,
      identity: { mode: "assertion", header: "X-Caller" },
    });
    expect(n!.upstream.url).toBe(notes.url);
    expect(n!.policy?.tools).toEqual([]);
    expect(f).toMatchObject({ name: "files", identity: { mode: "none", header: "X-Who" } });
    expect(f!.policy?.tools).toEqual([{ match: "*", scopes: ["top"], mode: "all" }]);
    expect(f!.upstream.command).toEqual(files.command);
    const one = resolveUpstreams(validateConfig({ mcpPath: "/x", upstream: { url: notes.url } }, null));
    expect(one).toMatchObject([{ name: "default", path: "/x", shorthand: true, identity: {} }]);
    expect(resolveUpstreams(validateConfig({}, null))).toEqual([]);
  });

  it("is what `mcpgate config check` loads from a YAML file", () => {
    const file = join(dir, "gw.yaml");
    writeFileSync(
      file,
      [
        "upstreams:",
        "  - { name: notes, path: /notes/mcp, url: http://127.0.0.1:3001/mcp }",
        "  - { name: notes, path: /other/mcp, url: http://127.0.0.1:3002/mcp }",
      ].join("\n"),
    );
    expect(() => loadConfigFile(file, {})).toThrow(/duplicate upstream name "notes"/);
  });
});
