import { describe, expect, it } from "vitest";
import { validateConfig } from "../../src/config.js";
import { configuredIssuers, jwtVerifierOptions } from "../../src/gateway/assembly/oauth-options.js";

describe("mapping the auth.jwt / auth.issuers configuration to verifier options", () => {
  it("parses durations and keeps every field, and uses the shortest cacheTtl", () => {
    const config = validateConfig(
      {
        auth: {
          jwt: {
            issuer: "https://a.example",
            jwksUri: "https://a.example/jwks",
            algorithms: ["ES256"],
            clockTolerance: "30s",
            cacheTtl: "5m",
            jwksTimeout: "2s",
            jwksCooldown: "10s",
            jwksMaxAge: "1h",
            typ: "at+jwt",
          },
          issuers: [
            {
              issuer: "https://b.example",
              audience: ["https://mcp.example/mcp"],
              cacheTtl: "1m",
              introspection: {
                endpoint: "https://b.example/introspect",
                clientId: "rs",
                clientSecret: "s",
                timeout: "3s",
              },
            },
          ],
        },
      },
      {},
    );
    const issuers = configuredIssuers(config);
    expect(issuers.map((i) => i.issuer)).toEqual(["https://a.example", "https://b.example"]);
    const options = jwtVerifierOptions(issuers, "https://mcp.example/mcp");
    expect(options.publicUrl).toBe("https://mcp.example/mcp");
    expect(options.cache).toEqual({ ttlMs: 60_000 });
    expect(options.issuers[0]).toMatchObject({
      issuer: "https://a.example",
      jwksUri: "https://a.example/jwks",
      algorithms: ["ES256"],
      clockToleranceSec: 30,
      typ: "at+jwt",
      jwks: { timeoutMs: 2000, cooldownMs: 10_000, maxStaleMs: 3_600_000 },
    });
    expect(options.issuers[1]).toMatchObject({
      issuer: "https://b.example",
      audience: ["https://mcp.example/mcp"],
      introspection: {
        endpoint: "https://b.example/introspect",
        clientId: "rs",
        clientSecret: "s",
        timeoutMs: 3000,
      },
    });
  });

  it("finds no issuers when OAuth is not configured", () => {
    expect(configuredIssuers(validateConfig({}, {}))).toEqual([]);
  });
});
