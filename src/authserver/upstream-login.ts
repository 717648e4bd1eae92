import * as oidc from "openid-client";
import { McpGateError } from "../core/errors.js";
import { isLoopbackHost } from "./client-policy.js";

/**
 * `authServer.login.oidc`: the person proves who they are at the team's own OpenID Provider
 * (Google, Entra ID, Okta, company SSO), through openid-client: discovery, authorization code with
 * PKCE S256, `state` and `nonce`, and ID-token validation (signature, `iss`, `aud`, `exp`, `nonce`).
 */

/** Options of {@link createUpstreamLogin}. */
export interface UpstreamLoginOptions {
  issuer: string;
  clientId: string;
  clientSecret?: string;
  scopes: string[];
  /** The ID-token claim naming the person. */
  subjectClaim: string;
  allowedEmailDomains?: string[];
  allowedClaims?: Record<string, string[]>;
  /** Our callback (`<issuer>/oauth/callback`), registered at the IdP. */
  redirectUri: string;
}

/** What one login attempt must remember until the IdP sends the browser back. */
export interface PendingLogin {
  state: string;
  nonce: string;
  codeVerifier: string;
}

/** The outcome of a callback: a subject, or a refusal reason safe to show. */
export type UpstreamLoginResult =
  | { ok: true; subject: string; email?: string }
  | { ok: false; reason: string };

/** The upstream login flow. */
export interface UpstreamLogin {
  /** Start: the IdP URL to send the browser to, and what to remember. */
  start(): Promise<{ url: string; pending: PendingLogin }>;
  /** Finish: exchange the code, validate the ID token, apply the allow-lists. */
  finish(callbackUrl: URL, pending: PendingLogin): Promise<UpstreamLoginResult>;
}

/**
 * Create the upstream login. Discovery runs on first use and is retried after a failure.
 *
 * @example const login = createUpstreamLogin({ issuer, clientId, scopes: ["openid"], subjectClaim: "sub", redirectUri });
 */
export function createUpstreamLogin(options: UpstreamLoginOptions): UpstreamLogin {
  let config: Promise<oidc.Configuration> | undefined;
  const insecure = (() => {
    const u = new URL(options.issuer);
    // An http IdP is accepted on loopback only (development and tests), never across a network.
    return u.protocol === "http:" && isLoopbackHost(u.hostname);
  })();

  function configuration(): Promise<oidc.Configuration> {
    config ??= oidc
      .discovery(
        new URL(options.issuer),
        options.clientId,
        undefined,
        options.clientSecret ? oidc.ClientSecretPost(options.clientSecret) : oidc.None(),
        insecure ? { execute: [oidc.allowInsecureRequests], timeout: 5 } : { timeout: 5 },
      )
      .catch((err) => {
        config = undefined;
        throw new McpGateError("ERR_ISSUER_DISCOVERY", "login.oidc: IdP discovery failed", { cause: err });
      });
    return config;
  }

  return {
    async start() {
      const cfg = await configuration();
      const pending: PendingLogin = {
        state: oidc.randomState(),
        nonce: oidc.randomNonce(),
        codeVerifier: oidc.randomPKCECodeVerifier(),
      };
      const url = oidc.buildAuthorizationUrl(cfg, {
        redirect_uri: options.redirectUri,
        scope: options.scopes.join(" "),
        code_challenge: await oidc.calculatePKCECodeChallenge(pending.codeVerifier),
        code_challenge_method: "S256",
        state: pending.state,
        nonce: pending.nonce,
      });
      return { url: url.href, pending };
    },
    async finish(callbackUrl, pending) {
      const cfg = await configuration();
      let claims: Record<string, unknown> | undefined;
      try {
        const tokens = await oidc.authorizationCodeGrant(cfg, callbackUrl, {
          pkceCodeVerifier: pending.codeVerifier,
          expectedState: pending.state,
          expectedNonce: pending.nonce,
          idTokenExpected: true,
        });
        claims = tokens.claims() as Record<string, unknown> | undefined;
      } catch {
        // Never echo the IdP's error text: it may carry the code or token fragments.
        return { ok: false, reason: "the identity provider did not confirm the sign-in" };
      }
      if (!claims) return { ok: false, reason: "the identity provider sent no ID token" };
      return checkClaims(claims, options);
    },
  };
}

/**
 * Apply `subjectClaim` and the allow-lists to validated ID-token claims.
 *
 * @example checkClaims({ sub: "u1", email: "a@example.com", email_verified: true }, { subjectClaim: "sub", allowedEmailDomains: ["example.com"] })
 */
export function checkClaims(
  claims: Record<string, unknown>,
  options: Pick<UpstreamLoginOptions, "subjectClaim" | "allowedEmailDomains" | "allowedClaims">,
): UpstreamLoginResult {
  const subject = claims[options.subjectClaim];
  if (typeof subject !== "string" || subject === "" || subject.length > 256) {
    return { ok: false, reason: `the ID token has no usable "${options.subjectClaim}" claim` };
  }
  const email = typeof claims.email === "string" ? claims.email : undefined;
  if (options.allowedEmailDomains) {
    // An unverified address proves nothing about the domain (OIDC Core §5.1 email_verified).
    const domain = email?.split("@").pop()?.toLowerCase();
    const allowed = options.allowedEmailDomains.map((d) => d.toLowerCase());
    if (claims.email_verified !== true || !domain || !allowed.includes(domain)) {
      return { ok: false, reason: "this account's email domain is not allowed" };
    }
  }
  for (const [claim, values] of Object.entries(options.allowedClaims ?? {})) {
    const v = claims[claim];
    const have = Array.isArray(v)
      ? v.filter((x): x is string => typeof x === "string")
      : typeof v === "string"
        ? [v]
        : [];
    if (!have.some((x) => values.includes(x))) return { ok: false, reason: "this account is not allowed" };
  }
  return email === undefined ? { ok: true, subject } : { ok: true, subject, email };
}
