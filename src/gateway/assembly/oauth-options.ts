import type { JwtIssuerOptions, JwtVerifierOptions } from "../../authn/jwt.js";
import { durationMs, type GatewayConfig, type IssuerConfig } from "../../config.js";

/**
 * The OAuth issuers a configuration names: `auth.jwt` (one) and `auth.issuers` (several), together.
 *
 * @example configuredIssuers(config).length > 0 // OAuth is on: PRM served, resource_metadata in challenges
 */
export function configuredIssuers(config: GatewayConfig): readonly IssuerConfig[] {
  return [...(config.auth.jwt ? [config.auth.jwt] : []), ...(config.auth.issuers ?? [])];
}

function issuerOptions(c: IssuerConfig, onJwksFetch?: (outcome: "ok" | "error") => void): JwtIssuerOptions {
  const o: JwtIssuerOptions = { issuer: c.issuer };
  if (c.audience !== undefined) o.audience = typeof c.audience === "string" ? c.audience : [...c.audience];
  if (c.jwksUri !== undefined) o.jwksUri = c.jwksUri;
  if (c.algorithms !== undefined) o.algorithms = [...c.algorithms];
  if (c.typ !== undefined) o.typ = c.typ;
  if (c.clockTolerance !== undefined) o.clockToleranceSec = Math.floor(durationMs(c.clockTolerance) / 1000);
  const jwks: NonNullable<JwtIssuerOptions["jwks"]> = {};
  if (c.jwksTimeout !== undefined) jwks.timeoutMs = durationMs(c.jwksTimeout);
  if (c.jwksCooldown !== undefined) jwks.cooldownMs = durationMs(c.jwksCooldown);
  if (c.jwksMaxAge !== undefined) jwks.maxStaleMs = durationMs(c.jwksMaxAge);
  if (onJwksFetch) jwks.onFetch = onJwksFetch;
  o.jwks = jwks;
  if (c.introspection) {
    const i = c.introspection;
    o.introspection = { endpoint: i.endpoint };
    if (i.clientId !== undefined) o.introspection.clientId = i.clientId;
    if (i.clientSecret !== undefined) o.introspection.clientSecret = i.clientSecret;
    if (i.timeout !== undefined) o.introspection.timeoutMs = durationMs(i.timeout);
  }
  return o;
}

/**
 * Map the config's issuer entries (durations as strings) to `createJwtVerifier` options. The
 * verified-token cache is shared by all issuers; its TTL is the shortest `cacheTtl` configured.
 *
 * @example createJwtVerifier(jwtVerifierOptions(configuredIssuers(config), publicUrl))
 */
export function jwtVerifierOptions(
  issuers: readonly IssuerConfig[],
  publicUrl: string,
  hooks: { onJwksFetch?: (outcome: "ok" | "error") => void } = {},
): JwtVerifierOptions {
  const ttls = issuers.flatMap((c) => (c.cacheTtl !== undefined ? [durationMs(c.cacheTtl)] : []));
  const options: JwtVerifierOptions = {
    publicUrl,
    issuers: issuers.map((c) => issuerOptions(c, hooks.onJwksFetch)),
  };
  if (ttls.length > 0) options.cache = { ttlMs: Math.min(...ttls) };
  return options;
}
