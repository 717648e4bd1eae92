import type { Identity } from "../core/identity.js";

/**
 * Scopes of an OAuth token: `scope` (RFC 8693 §4.2 / RFC 9068 §2.2.3, space-separated) and `scp`
 * (an array, as Azure AD and Okta issue it, or a space-separated string). Duplicates dropped.
 *
 * @example scopesFromClaims({ scope: "a b", scp: ["b", "c"] }) // ["a", "b", "c"]
 */
export function scopesFromClaims(claims: Record<string, unknown>): string[] {
  const out = new Set<string>();
  addScopes(out, claims.scope);
  addScopes(out, claims.scp);
  return [...out];
}

function addScopes(out: Set<string>, value: unknown): void {
  if (typeof value === "string") {
    for (const s of value.split(" ")) if (s !== "") out.add(s);
  } else if (Array.isArray(value)) {
    for (const s of value) if (typeof s === "string" && s !== "" && !s.includes(" ")) out.add(s);
  }
}

// Issuers are configuration (a handful): remember their host instead of parsing a URL per token.
const hostCache = new Map<string, string>();

// Characters we let into a log line from a claim an issuer controls.
const UNSAFE = /[^A-Za-z0-9._~@:+\-|/=]/g;

/**
 * A log-safe label for an OAuth identity: `oauth:<sub>@<issuer host>`, the subject trimmed to 64
 * characters and stripped of anything outside a conservative set. Contains nothing of the token.
 *
 * @example oauthDisplay("https://auth.example.com", "user-42") // "oauth:user-42@auth.example.com"
 */
export function oauthDisplay(issuer: string, subject: string): string {
  let host = hostCache.get(issuer);
  if (host === undefined) {
    try {
      host = new URL(issuer).host;
    } catch {
      host = issuer; // not a URL: keep it raw; it is configuration, not a secret
    }
    if (hostCache.size < 1000) hostCache.set(issuer, host);
  }
  const sub = subject.replace(UNSAFE, "_").slice(0, 64);
  return `oauth:${sub}@${host}`;
}

/**
 * The Identity of a verified OAuth token (DESIGN.md §4): principal `oauth:<iss>#<sub>`, so a
 * session stays bound to the same subject of the same issuer across token refreshes.
 *
 * @example
 * oauthIdentity({ issuer: "https://auth.example.com", subject: "u1", scopes: ["tools:call"], expiresAt: 1_900_000_000 });
 */
export function oauthIdentity(input: {
  issuer: string;
  subject: string;
  scopes: string[];
  clientId?: string | undefined;
  expiresAt?: number | undefined;
}): Identity {
  const identity: Identity = {
    principal: `oauth:${input.issuer}#${input.subject}`,
    kind: "oauth2",
    subject: input.subject,
    scopes: input.scopes,
    displayPrefix: oauthDisplay(input.issuer, input.subject),
  };
  if (input.clientId !== undefined) identity.clientId = input.clientId;
  if (input.expiresAt !== undefined) identity.expiresAt = input.expiresAt;
  return identity;
}
