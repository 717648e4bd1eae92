import { describe, expect, it } from "vitest";
import { validateConfig } from "../../src/config.js";
import { startTestGateway } from "../helpers/gateway.js";

const upstream = { url: "http://127.0.0.1:9/mcp" };

describe("authServer configuration", () => {
  it("fills the documented defaults", () => {
    const c = validateConfig({ upstream, authServer: { login: { apiKey: {} } } }, {});
    expect(c.authServer).toMatchObject({
      clients: {
        registration: true,
        metadataDocuments: true,
        allowLoopbackMetadataDocuments: false,
        maxRegistered: 10_000,
        registrationRateLimit: { limit: 10, window: "1m" },
        unusedClientTtl: "30d",
      },
      tokens: { accessTtl: "1h", refreshTtl: "30d" },
      consent: { remember: "30d" },
    });
  });

  it("refuses no login, two logins, an unknown field and a bad duration, naming the field", () => {
    expect(() => validateConfig({ upstream, authServer: { login: {} } }, {})).toThrow(/authServer.login/);
    expect(() =>
      validateConfig(
        {
          upstream,
          authServer: { login: { apiKey: {}, oidc: { issuer: "https://idp.example", clientId: "x" } } },
        },
        {},
      ),
    ).toThrow(/exactly one/);
    expect(() => validateConfig({ upstream, authServer: { login: { apiKey: {} }, typo: 1 } }, {})).toThrow(
      /authServer/,
    );
    expect(() =>
      validateConfig({ upstream, authServer: { login: { apiKey: {} }, tokens: { accessTtl: "soon" } } }, {}),
    ).toThrow(/authServer.tokens.accessTtl/);
  });

  it("refuses an unused-client lifetime shorter than an hour, or not a duration", () => {
    const withTtl = (unusedClientTtl: unknown, refreshTtl = "1h") =>
      validateConfig(
        {
          upstream,
          authServer: { login: { apiKey: {} }, clients: { unusedClientTtl }, tokens: { refreshTtl } },
        },
        {},
      );
    expect(() => withTtl("59m")).toThrow(/authServer.clients.unusedClientTtl.*at least 1h/s);
    expect(() => withTtl("soon")).toThrow(/authServer.clients.unusedClientTtl/);
    expect(withTtl("1h").authServer?.clients.unusedClientTtl).toBe("1h");
    // Shorter than the refresh tokens' life: an idle client's refresh tokens would be stranded.
    expect(() => withTtl("7d", "30d")).toThrow(/unusedClientTtl must be at least tokens.refreshTtl/);
    expect(withTtl("30d", "30d").authServer?.clients.unusedClientTtl).toBe("30d");
  });

  it("takes an IPv6 /48 registration limit, at least the per-source one, and passes none by default", () => {
    const withLimit = (registrationRateLimit: unknown) =>
      validateConfig(
        { upstream, authServer: { login: { apiKey: {} }, clients: { registrationRateLimit } } },
        {},
      );
    expect(
      withLimit({ limit: 10, window: "1m", ipv6Slash48Limit: 25 }).authServer?.clients.registrationRateLimit,
    ).toEqual({ limit: 10, window: "1m", ipv6Slash48Limit: 25 });
    expect(withLimit({ limit: 10, window: "1m" }).authServer?.clients.registrationRateLimit).toEqual({
      limit: 10,
      window: "1m",
    });
    expect(() => withLimit({ limit: 10, window: "1m", ipv6Slash48Limit: 9 })).toThrow(
      /authServer.clients.registrationRateLimit.ipv6Slash48Limit.*at least registrationRateLimit.limit/s,
    );
    expect(() => withLimit({ limit: 10, window: "1m", ipv6Slash48Limit: 0 })).toThrow(/ipv6Slash48Limit/);
  });

  it("takes the IdP secret from the environment", () => {
    const c = validateConfig(
      {
        upstream,
        authServer: {
          login: { oidc: { issuer: "https://idp.example", clientId: "gw", clientSecret: "${IDP_SECRET}" } },
        },
      },
      { IDP_SECRET: "from-the-environment" },
    );
    expect(c.authServer?.login.oidc?.clientSecret).toBe("from-the-environment");
  });

  it("refuses to start login.apiKey without auth.apiKeys (fail closed, a clear message)", async () => {
    await expect(
      startTestGateway({ upstream, authServer: { login: { apiKey: {} }, store: "memory:" } }),
    ).rejects.toThrow(/authServer.login.apiKey needs auth.apiKeys/);
  });

  it("refuses an issuer with a path", async () => {
    await expect(
      startTestGateway({
        upstream,
        authServer: {
          issuer: "https://mcp.example.com/as",
          login: { oidc: { issuer: "https://idp.example", clientId: "gw" } },
          store: "memory:",
        },
      }),
    ).rejects.toThrow(/origin/);
  });
});
