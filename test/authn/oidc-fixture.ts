import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair } from "jose";
import Provider from "oidc-provider";

/** A real OAuth 2.0 authorization server (oidc-provider) on 127.0.0.1:0. */
export interface AuthServer {
  issuer: string;
  tokenEndpoint: string;
  introspectionEndpoint: string;
  /** Client allowed the client_credentials grant. */
  client: { id: string; secret: string };
  /** The resource server's own client (for RFC 7662 introspection). */
  gateway: { id: string; secret: string };
  /** Every request path the server saw, in order. */
  paths: string[];
  /** The oidc-provider instance (e.g. to register an extension grant: test/identity/token-exchange-grant.ts). */
  provider: Provider;
  /** The JWKS the server signs access tokens with (public part). */
  jwks: { keys: Record<string, unknown>[] };
  /** Get an access token for `resource` via client_credentials (RFC 8707 `resource`). */
  token(resource: string, scope?: string): Promise<string>;
  stop(): Promise<void>;
}

export interface AuthServerOptions {
  /** `jwt` (default) or `opaque` access tokens. */
  format?: "jwt" | "opaque";
  /** Scopes the resource server lets clients request. */
  scopes?: string[];
  /** Lifetime of access tokens in seconds. Default 300. */
  ttlSec?: number;
  /** Grant types of the gateway's client (e.g. RFC 8693 token exchange). Default none. */
  gatewayGrantTypes?: string[];
}

export async function startAuthServer(options: AuthServerOptions = {}): Promise<AuthServer> {
  const format = options.format ?? "jwt";
  const scopes = options.scopes ?? ["tools:call", "admin"];
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const signing = { ...(await exportJWK(privateKey)), kid: "as-rsa-1", alg: "RS256", use: "sig" };
  const client = { id: "mcp-client", secret: "mcp-client-secret-0123456789abcdef" };
  const gateway = { id: "mcp-gateway", secret: "mcp-gateway-secret-0123456789abcdef" };

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: client.id,
        client_secret: client.secret,
        grant_types: ["client_credentials"],
        redirect_uris: [],
        response_types: [],
        scope: scopes.join(" "),
      },
      {
        client_id: gateway.id,
        client_secret: gateway.secret,
        grant_types: options.gatewayGrantTypes ?? [],
        redirect_uris: [],
        response_types: [],
      },
    ],
    jwks: { keys: [signing] },
    scopes,
    ttl: { ClientCredentials: () => options.ttlSec ?? 300 },
    // RFC 8693 §4.1: a token issued by exchange names the actor (test/identity/token-exchange-grant.ts).
    extraTokenClaims: async (_ctx: unknown, token: { gty?: string; clientId?: string }) =>
      token.gty === "token-exchange" ? { act: { sub: token.clientId } } : undefined,
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true, allowedPolicy: async () => true },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, resourceIndicator: string) => ({
          scope: scopes.join(" "),
          audience: resourceIndicator,
          accessTokenTTL: options.ttlSec ?? 300,
          accessTokenFormat: format,
          ...(format === "jwt" ? { jwt: { sign: { alg: "RS256" } } } : {}),
        }),
      },
    },
  });
  // oidc-provider logs a warning per dev-only setting; keep the test output clean.
  provider.on("server_error", () => {});
  const paths: string[] = [];
  const handler = provider.callback();
  server.on("request", (req: IncomingMessage, res) => {
    paths.push((req.url ?? "/").split("?")[0]!);
    handler(req, res);
  });

  const tokenEndpoint = `${issuer}/token`;
  return {
    issuer,
    tokenEndpoint,
    introspectionEndpoint: `${issuer}/token/introspection`,
    client,
    gateway,
    paths,
    provider,
    jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: "as-rsa-1", alg: "RS256", use: "sig" }] },
    async token(resource, scope = scopes.join(" ")) {
      const res = await fetch(tokenEndpoint, {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString("base64")}`,
        },
        body: new URLSearchParams({ grant_type: "client_credentials", resource, scope }).toString(),
      });
      const body = (await res.json()) as {
        access_token?: string;
        error?: string;
        error_description?: string;
      };
      if (!body.access_token)
        throw new Error(`token request failed: ${body.error} ${body.error_description}`);
      return body.access_token;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
