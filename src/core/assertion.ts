/**
 * The identity assertion the gateway signs for an upstream (DESIGN.md §9): one vocabulary shared by
 * the signer (`src/identity/`) and the upstream-side verifier (`mcpgate/upstream`).
 */

/**
 * The JOSE `typ` of an identity assertion (RFC 8725 §3.11 explicit typing): the verifier requires
 * it, so an access token signed with the same keys (the gateway's authorization server uses
 * `at+jwt`, RFC 9068) can never be accepted as an assertion, nor an assertion as an access token.
 */
export const IDENTITY_ASSERTION_TYP = "mcpgate-identity+jwt";

/** The claims of an identity assertion. Times are epoch seconds (RFC 7519 NumericDate). */
export interface IdentityAssertionClaims {
  /** The gateway (`identity.issuer`, default the publicUrl origin). */
  iss: string;
  /** The upstream's URL, or `identity.audience`. */
  aud: string;
  /** The caller's principal: `key:<id>`, `oauth:<iss>#<sub>` or `static`. */
  sub: string;
  /** Space-separated scopes (RFC 8693 §4.2 `scope`). */
  scope: string;
  /** The OAuth client (`client_id`), or the key id for API keys (RFC 8693 §4.3). */
  client_id: string;
  kind: "api_key" | "oauth2" | "static_key";
  tenant?: string;
  /** The MCP session id, when there is one. */
  sid?: string;
  iat: number;
  exp: number;
  jti: string;
}
