import { InvalidTokenError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTPayload, jwtVerify } from "jose";
import { IDENTITY_ASSERTION_TYP } from "../core/assertion.js";
import { McpGateError } from "../core/errors.js";

/** Options of {@link verifyGatewayAssertion}. */
export interface GatewayAssertionOptions {
  /** The gateway's JWKS: `https://<gateway>/.well-known/jwks.json`. */
  jwksUrl?: string | URL;
  /** Or a fixed key set (e.g. read from a file), instead of `jwksUrl`. */
  jwks?: JSONWebKeySet;
  /** The gateway's `identity.issuer` (default its publicUrl origin). */
  issuer: string;
  /** This upstream as the gateway names it: its URL, or the configured `identity.audience`. */
  audience: string;
  /** Accepted algorithms. Default ["ES256", "EdDSA"] (what the gateway signs with). */
  algorithms?: string[];
  /** Clock skew tolerated on `exp`/`iat`, seconds. Default 5. */
  clockToleranceSec?: number;
}

/** An `OAuthTokenVerifier` for the SDK's `requireBearerAuth`. */
export interface GatewayAssertionVerifier {
  /** Verify an assertion and map it to the SDK's `AuthInfo`; throws the SDK's `InvalidTokenError` (→ 401). */
  verifyAccessToken(token: string): Promise<AuthInfo>;
}

/** The caller, as a tool handler reads it from `extra.authInfo.extra`. */
export interface GatewayCaller {
  /** `key:<id>`, `oauth:<iss>#<sub>` or `static`. */
  principal: string;
  kind: "api_key" | "oauth2" | "static_key";
  /** The key id or OAuth `sub`. */
  subject: string;
  tenant?: string;
  /** The MCP session id at the gateway, when there is one. */
  sessionId?: string;
  /** The assertion's `jti`, for the upstream's own audit log. */
  assertionId: string;
}

const KINDS = new Set(["api_key", "oauth2", "static_key"]);

/**
 * The upstream's side of `identity: { mode: assertion }` (DESIGN.md §9): verify the JWT the gateway
 * signed — signature against the gateway's JWKS (jose remote JWKS: cached, refetched on an unknown
 * `kid`), `typ`, `iss`, `aud`, `exp` — and return the SDK's `AuthInfo`, so that with the SDK's
 * `requireBearerAuth({ verifier })` every tool handler reads the caller from `extra.authInfo`.
 * A stdio child can verify its `MCPGATE_IDENTITY` with the same verifier.
 *
 * @example
 * import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
 * const verifier = verifyGatewayAssertion({
 *   jwksUrl: "http://127.0.0.1:8080/.well-known/jwks.json",
 *   issuer: "http://127.0.0.1:8080",
 *   audience: "http://127.0.0.1:3001/mcp",
 * });
 * app.post("/mcp", requireBearerAuth({ verifier }), handler); // extra.authInfo.extra.principal
 */
export function verifyGatewayAssertion(options: GatewayAssertionOptions): GatewayAssertionVerifier {
  if (!options || typeof options.issuer !== "string" || options.issuer === "")
    throw new McpGateError("ERR_INVALID_OPTION", "verifyGatewayAssertion: issuer is required");
  if (typeof options.audience !== "string" || options.audience === "")
    throw new McpGateError("ERR_INVALID_OPTION", "verifyGatewayAssertion: audience is required");
  if ((options.jwksUrl === undefined) === (options.jwks === undefined))
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      "verifyGatewayAssertion: give jwksUrl or jwks (one of them)",
    );
  const keys =
    options.jwks !== undefined
      ? createLocalJWKSet(options.jwks)
      : createRemoteJWKSet(new URL(options.jwksUrl!), { timeoutDuration: 5000, cooldownDuration: 5000 });
  const verifyOptions = {
    issuer: options.issuer,
    audience: options.audience,
    algorithms: options.algorithms ?? ["ES256", "EdDSA"],
    // RFC 8725 §3.11: only an identity assertion, never another JWT signed with the same keys.
    typ: IDENTITY_ASSERTION_TYP,
    requiredClaims: ["exp", "iat", "sub", "jti"],
    clockTolerance: options.clockToleranceSec ?? 5,
  };
  let resource: URL | undefined;
  try {
    resource = new URL(options.audience);
  } catch {
    resource = undefined; // a URN audience (stdio) is not a URL
  }

  return {
    async verifyAccessToken(token) {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keys, verifyOptions));
      } catch {
        // No detail from the token or the verifier in the message: it reaches the client.
        throw new InvalidTokenError("invalid identity assertion");
      }
      const kind = payload.kind;
      if (typeof kind !== "string" || !KINDS.has(kind) || typeof payload.client_id !== "string")
        throw new InvalidTokenError("invalid identity assertion");
      const caller: GatewayCaller = {
        principal: payload.sub!,
        kind: kind as GatewayCaller["kind"],
        subject: subjectOf(payload.sub!),
        assertionId: payload.jti!,
      };
      if (typeof payload.tenant === "string") caller.tenant = payload.tenant;
      if (typeof payload.sid === "string") caller.sessionId = payload.sid;
      const info: AuthInfo = {
        token,
        clientId: payload.client_id,
        scopes: typeof payload.scope === "string" && payload.scope !== "" ? payload.scope.split(" ") : [],
        expiresAt: payload.exp!,
        extra: { ...caller },
      };
      if (resource) info.resource = resource;
      return info;
    },
  };
}

// "key:<id>" → id; "oauth:<iss>#<sub>" → sub (after the first '#': an issuer URL has no
// fragment, RFC 8414 §2, while a `sub` may contain '#'); "static".
function subjectOf(principal: string): string {
  if (principal.startsWith("key:")) return principal.slice(4);
  if (principal.startsWith("oauth:")) return principal.slice(principal.indexOf("#") + 1);
  return principal;
}
