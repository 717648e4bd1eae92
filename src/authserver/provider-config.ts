import type { JWK } from "jose";
import { errors, type ProviderClient, type ProviderContext } from "oidc-provider";
import type { OAuthRecordStore } from "../stores/oauth-records.js";
import type { SigningKeySeal } from "../stores/signing-key-seal.js";
import { isAllowedRedirectUri, isFetchableMetadataUrl } from "./client-policy.js";
import { MAX_METADATA_DOCUMENT_BYTES } from "./loopback-metadata.js";
import { adapterFor } from "./record-adapter.js";

/** What the provider configuration is built from (resolved options of the authorization server). */
export interface ProviderSettings {
  resources: readonly string[];
  scopes: readonly string[];
  accessTtlSec: number;
  refreshTtlSec: number;
  consentRememberSec: number;
  registration: boolean;
  metadataDocuments: boolean;
  allowLoopbackMetadataDocuments: boolean;
  /** How long a registered client is kept unused (client-expiry.ts). */
  unusedClientTtlSec: number;
  /** Seals registered clients' secrets at rest (`MCPGATE_SIGNING_KEY_SECRET`); absent: stored as given. */
  seal?: SigningKeySeal;
  store: OAuthRecordStore;
  shortLivedStore?: OAuthRecordStore;
  signingKey: JWK;
  cookieKeys: string[];
  /** Scopes an account may hold (undefined: any supported scope), e.g. an API key's scopes. */
  accountScopes(accountId: string): Promise<string[] | undefined>;
  /** Whether an account still exists (a revoked key's logins end here, on refresh too). */
  accountActive(accountId: string): Promise<boolean>;
  /** Where the browser is sent to log in or consent. */
  interactionUrl(uid: string): string;
}

function requestedResource(ctx: ProviderContext): string | undefined {
  const r = ctx.oidc?.params?.resource;
  return typeof r === "string" ? r : undefined;
}

function accountOf(ctx: ProviderContext): string | undefined {
  return ctx.oidc?.entities?.Account?.accountId ?? ctx.oidc?.session?.accountId;
}

/**
 * The oidc-provider configuration for the gateway's authorization server. The security choices,
 * each one the issue's list: authorization code only; PKCE required for every client, S256 only
 * (oidc-provider supports no other method); RFC 8707 `resource` required and only the gateway's
 * own resources; RFC 9207 `iss` in every authorization response (on by default); refresh tokens for
 * every client allowed the grant, rotated on every use, a reused one revoking its whole grant
 * (oidc-provider's reuse detection); RFC 7009 revocation; JWT access tokens (RFC 9068) signed with
 * the gateway's key, `aud` = the resource; no implicit flow, no userinfo, no DPoP-bound tokens the
 * resource server could not check.
 */
export function providerConfiguration(settings: ProviderSettings): Record<string, unknown> {
  const resources = new Set(settings.resources);
  const supported = [...settings.scopes];

  async function resourceScopes(ctx: ProviderContext): Promise<string> {
    const account = accountOf(ctx);
    const allowed = account ? await settings.accountScopes(account) : undefined;
    return (allowed ? supported.filter((s) => allowed.includes(s)) : supported).join(" ");
  }

  return {
    adapter: adapterFor(settings),
    clients: [],
    jwks: { keys: [settings.signingKey] },
    cookies: {
      keys: settings.cookieKeys,
      // Consent and login are remembered per browser for consent.remember (MCP confused-deputy guidance).
      long: { signed: true, httpOnly: true, sameSite: "lax", maxAge: settings.consentRememberSec * 1000 },
      short: { signed: true, httpOnly: true, sameSite: "lax" },
    },
    scopes: ["openid", "offline_access", ...supported],
    claims: { openid: ["sub"] },
    responseTypes: ["code"],
    grantTypes: undefined,
    pkce: { required: () => true },
    clientDefaults: {
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      id_token_signed_response_alg: settings.signingKey.alg,
    },
    enabledJWA: {
      idTokenSigningAlgValues: ["ES256", "EdDSA"],
      clientAuthSigningAlgValues: ["ES256", "EdDSA", "RS256", "PS256"],
    },
    routes: {
      authorization: "/oauth/authorize",
      token: "/oauth/token",
      registration: "/oauth/register",
      revocation: "/oauth/revoke",
      jwks: "/oauth/jwks",
      end_session: "/oauth/logout",
      userinfo: "/oauth/userinfo",
      introspection: "/oauth/introspect",
      pushed_authorization_request: "/oauth/par",
      code_verification: "/oauth/device",
      device_authorization: "/oauth/device/auth",
      backchannel_authentication: "/oauth/backchannel",
      challenge: "/oauth/challenge",
    },
    interactions: {
      url: (_ctx: unknown, interaction: { uid: string }) => settings.interactionUrl(interaction.uid),
    },
    ttl: {
      AccessToken: settings.accessTtlSec,
      AuthorizationCode: 60,
      RefreshToken: settings.refreshTtlSec,
      Grant: settings.refreshTtlSec,
      Session: settings.consentRememberSec,
      Interaction: 600,
      IdToken: settings.accessTtlSec,
    },
    // Every client allowed the grant gets a refresh token (DESIGN.md §9: no offline_access needed),
    // and it outlives the browser session.
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(g: string): boolean }) =>
      client.grantTypeAllowed("refresh_token"),
    expiresWithSession: async () => false,
    rotateRefreshToken: () => true,
    findAccount: async (_ctx: unknown, sub: string) =>
      (await settings.accountActive(sub)) ? { accountId: sub, claims: async () => ({ sub }) } : undefined,
    // The grant id in the access token lets the resource server see a revoked family (token-verifier.ts).
    extraTokenClaims: async (_ctx: unknown, token: { grantId?: string; kind?: string }) =>
      token.kind === "AccessToken" && token.grantId ? { gid: token.grantId } : undefined,
    fetchResponseBodyLimits: { "client_id metadata document": MAX_METADATA_DOCUMENT_BYTES },
    renderError: async (
      ctx: { type: string; body: string },
      out: { error: string; error_description?: string },
    ) => {
      ctx.type = "html";
      const text = `${out.error}${out.error_description ? `: ${out.error_description}` : ""}`.replace(
        /[&<>"']/g,
        (c) => `&#${c.charCodeAt(0)};`,
      );
      ctx.body = `<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Authorization error</title><h1>Authorization error</h1><p>${text}</p>`;
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      dPoP: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      introspection: { enabled: false },
      // RFC 7009 §2.1: a client may revoke only its own tokens.
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx: unknown, client: ProviderClient, token: { clientId?: string }) =>
          token.clientId === client.clientId,
      },
      registration: {
        enabled: settings.registration,
        initialAccessToken: false,
        // RFC 7591 §2: dynamic clients are public (PKCE) unless they ask otherwise.
        idFactory: undefined,
      },
      clientIdMetadataDocument: {
        enabled: settings.metadataDocuments,
        ack: "draft-02",
        // MCP client registration "Client ID Metadata Documents", security: no fetch from a
        // private, loopback or link-local address (SSRF); oidc-provider re-checks at connect.
        allowFetch: async (_ctx: unknown, clientId: string) => isFetchableMetadataUrl(clientId),
        allowClient: async (_ctx: unknown, client: ProviderClient) =>
          (client.redirectUris ?? []).every((u) => isAllowedRedirectUri(u)),
        cacheDuration: { min: 30, max: 86_400 },
      },
      resourceIndicators: {
        enabled: true,
        // RFC 8707 `resource` is required: a token is always for exactly one of our resources.
        defaultResource: async (ctx: ProviderContext, _client: unknown, oneOf?: string) => {
          if (oneOf) return oneOf;
          if (requestedResource(ctx)) return requestedResource(ctx);
          throw new errors.InvalidTarget("the resource parameter is required (RFC 8707)");
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx: ProviderContext, indicator: string) => {
          if (!resources.has(indicator))
            throw new errors.InvalidTarget("resource is not served by this gateway");
          return {
            scope: await resourceScopes(ctx),
            audience: indicator,
            accessTokenTTL: settings.accessTtlSec,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg: settings.signingKey.alg } },
          };
        },
      },
    },
    // RFC 7591 §2 / MCP: every client's redirect URIs (registered, or from a metadata document) are
    // https, or http on loopback (RFC 8252 §7.3). Listing the standard property runs this check on it.
    extraClientMetadata: {
      properties: ["redirect_uris"],
      validator: (_ctx: unknown, key: string, value: unknown) => {
        if (key !== "redirect_uris") return;
        if (
          !Array.isArray(value) ||
          value.length === 0 ||
          value.length > 20 ||
          !value.every(isAllowedRedirectUri)
        ) {
          throw new errors.InvalidRedirectUri("redirect_uris must be https or http on a loopback address");
        }
      },
    },
  };
}
