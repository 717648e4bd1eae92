import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair } from "jose";
import Provider from "oidc-provider";

/**
 * A real OpenID Provider (oidc-provider) on 127.0.0.1:<random>, standing in for the team's IdP
 * behind `authServer.login.oidc`. Its login form is oidc-provider's development form; only the
 * test users below exist (an unknown login gets no ID token).
 */
export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  close(): Promise<void>;
}

export const IDP_USERS: Record<string, Record<string, unknown>> = {
  alice: { sub: "alice", email: "alice@example.com", email_verified: true, groups: ["mcp-users"] },
  mallory: { sub: "mallory", email: "mallory@other.example", email_verified: true, groups: [] },
};

export async function startTestIdp(redirectUri: string): Promise<TestIdp> {
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const clientId = "mcpgate-gateway";
  const clientSecret = "idp-client-secret-0123456789abcdef";
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_post",
      },
    ],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: "idp-1", alg: "RS256", use: "sig" }] },
    claims: { openid: ["sub"], email: ["email", "email_verified"], groups: ["groups"] },
    scopes: ["openid", "email", "groups"],
    features: { devInteractions: { enabled: true } },
    findAccount: async (_ctx: unknown, sub: string) =>
      IDP_USERS[sub] ? { accountId: sub, claims: async () => IDP_USERS[sub] } : undefined,
    // The IdP trusts its one client: no consent screen at the IdP (ours is the one under test).
    loadExistingGrant: async (ctx: {
      oidc: { client: { clientId: string }; session: { accountId: string }; provider: Provider };
    }) => {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope("openid email groups");
      await grant.save();
      return grant;
    },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
  });
  provider.on("server_error", () => {});
  const handler = provider.callback();
  server.on("request", handler);
  return {
    issuer,
    clientId,
    clientSecret,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** In a browser page that was sent to the test IdP: log in as `user` on its development form. */
export async function loginAtTestIdp(
  page: import("playwright-core").Page,
  idp: TestIdp,
  user: string,
): Promise<void> {
  await page.waitForURL((u) => u.href.startsWith(idp.issuer));
  await page.fill('input[name="login"]', user);
  await page.fill('input[name="password"]', "any password");
  await page.click('button[type="submit"]');
}
