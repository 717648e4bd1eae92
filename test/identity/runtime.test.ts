import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Identity } from "../../src/core/identity.js";
import { createIdentityRuntime } from "../../src/identity/runtime.js";
import { type AuthServer, startAuthServer } from "../authn/oidc-fixture.js";
import {
  registerTokenExchange,
  TOKEN_EXCHANGE_GRANT,
  type TokenExchangeLog,
} from "./token-exchange-grant.js";

let as: AuthServer;
let log: TokenExchangeLog;
beforeAll(async () => {
  as = await startAuthServer({ gatewayGrantTypes: [TOKEN_EXCHANGE_GRANT] });
  log = registerTokenExchange(as);
});
afterAll(() => as.stop());

const key: Identity = { principal: "key:Alice123", kind: "api_key", subject: "Alice123", scopes: ["a"] };

describe("the identity runtime (config → hooks)", () => {
  it("discovers the token endpoint from the caller's issuer (RFC 8414) and exchanges there", async () => {
    const rt = await createIdentityRuntime({
      issuer: "https://mcp.example.com",
      keyStoreLocation: "memory:",
      upstreams: [
        {
          name: "notes",
          url: "http://127.0.0.1:3001/mcp",
          mode: "token-exchange",
          clientId: as.gateway.id,
          clientSecret: as.gateway.secret,
        },
      ],
    });
    const token = await as.token("https://gateway.example/mcp");
    const caller: Identity = {
      principal: `oauth:${as.issuer}#${as.client.id}`,
      kind: "oauth2",
      subject: as.client.id,
      scopes: ["tools:call"],
    };
    const before = log.requests;
    const c = await rt.hook("notes").credential({ identity: caller, token });
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    const exchanged = c.headers.authorization!.slice("Bearer ".length);
    expect(exchanged).not.toBe(token);
    expect(decodeJwt(exchanged)).toMatchObject({ aud: "http://127.0.0.1:3001/mcp", sub: as.client.id });
    expect(c.audit).toEqual({
      mode: "token-exchange",
      delegation: { act: { sub: as.gateway.id } },
      cached: false,
    });
    await rt.hook("notes").credential({ identity: caller, token });
    expect(log.requests - before).toBe(1);
    expect(as.paths).toContain("/.well-known/oauth-authorization-server");
    // API-key callers get an assertion (forKeys default), signed by the runtime's keys.
    const k = await rt.hook("notes").credential({ identity: key });
    expect(k.ok && k.audit?.mode).toBe("assertion");
    expect((await rt.jwks())?.keys).toHaveLength(1);
    await rt.close();
  });

  it("opens no signing keys when nothing signs, and answers mode none for unknown upstreams", async () => {
    const rt = await createIdentityRuntime({
      issuer: "https://mcp.example.com",
      keyStoreLocation: "postgres://nobody@127.0.0.1:1/unreachable",
      upstreams: [{ name: "plain", url: "http://127.0.0.1:3001/mcp" }],
    });
    expect(rt.signer).toBeUndefined();
    expect(await rt.jwks()).toBeUndefined();
    expect(rt.hook("other").mode).toBe("none");
    await rt.close();
  });
});
