import { createLocalJWKSet, jwtVerify } from "jose";
import { errors as oidcErrors } from "oidc-provider";
import type { AuthServer } from "../authn/oidc-fixture.js";

/** RFC 8693 §2.1 grant type. */
export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";

// The parts of oidc-provider this grant uses (the package ships no types; declared here, not shared).
type OidcError = new (description: string) => Error;
const errors = oidcErrors as unknown as Record<
  "InvalidGrant" | "InvalidRequest" | "InvalidTarget",
  OidcError
>;
interface GrantContext {
  oidc: { params: Record<string, unknown>; client: { clientId: string } };
  body?: unknown;
}
interface ExchangeProvider {
  AccessToken: new (init: Record<string, unknown>) => { resourceServer: unknown; save(): Promise<string> };
  ResourceServer: new (identifier: string, data: Record<string, unknown>) => unknown;
  registerGrantType(name: string, handler: (ctx: GrantContext) => Promise<void>, params: string[]): void;
}

/** What the grant saw: every exchange request, and the subject tokens' `sub`. */
export interface TokenExchangeLog {
  requests: number;
  subjects: string[];
  /** Make the next N exchanges fail with `invalid_grant` (the issuer refusing). */
  refuseNext: number;
}

/**
 * Register an RFC 8693 token-exchange grant on the fixture's oidc-provider: the subject token must
 * be a JWT access token this server issued (verified with its own key); the issued token is a JWT
 * for the requested `resource`, with the subject's `sub` and (the fixture's `extraTokenClaims`)
 * `act: { sub: <client> }` (§4.1).
 */
export function registerTokenExchange(
  as: AuthServer,
  options: { ttlSec?: number; scope?: string } = {},
): TokenExchangeLog {
  const log: TokenExchangeLog = { requests: 0, subjects: [], refuseNext: 0 };
  const provider = as.provider as unknown as ExchangeProvider;
  const keys = createLocalJWKSet(as.jwks as never);
  const handler = async (ctx: GrantContext) => {
    log.requests++;
    const { params, client } = ctx.oidc;
    if (log.refuseNext > 0) {
      log.refuseNext--;
      throw new errors.InvalidGrant("exchange refused by policy");
    }
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE)
      throw new errors.InvalidRequest("unsupported subject_token_type");
    let sub: string;
    try {
      const { payload } = await jwtVerify(String(params.subject_token), keys, { issuer: as.issuer });
      sub = String(payload.sub);
    } catch {
      throw new errors.InvalidGrant("subject_token is not valid");
    }
    log.subjects.push(sub);
    const resource = String(params.resource ?? "");
    if (!resource) throw new errors.InvalidTarget("resource is required");
    const ttl = options.ttlSec ?? 300;
    const token = new provider.AccessToken({
      accountId: sub,
      client,
      grantId: `tx-${log.requests}`,
      gty: "token-exchange",
      scope: options.scope ?? "tools:call",
      expiresIn: ttl,
    });
    token.resourceServer = new provider.ResourceServer(resource, {
      audience: resource,
      scope: options.scope ?? "tools:call",
      accessTokenTTL: ttl,
      accessTokenFormat: "jwt",
      jwt: { sign: { alg: "RS256" } },
    });
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: "Bearer",
      expires_in: ttl,
    };
  };
  provider.registerGrantType(TOKEN_EXCHANGE_GRANT, handler, [
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "resource",
    "audience",
  ]);
  return log;
}
