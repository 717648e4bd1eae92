import type { Identity } from "../core/identity.js";
import type { AuthFailureReason } from "../core/outcome.js";

/** The result of checking one credential. A bad credential is a value, never an exception. */
export type VerifyResult = { ok: true; identity: Identity } | { ok: false; reason: AuthFailureReason };

/**
 * A credential verifier: static key, stored API key, JWT, introspection. Infrastructure failures
 * (store or JWKS unreachable) throw `McpGateError` with `ERR_STORE_UNAVAILABLE` (→ 503); a wrong
 * credential returns `{ ok: false }` (→ 401).
 *
 * @example
 * const v = createStaticKeyVerifier({ key: process.env.MCP_API_KEY! });
 * if (v.accepts(token)) await v.verify(token);
 */
export interface CredentialVerifier {
  readonly kind: Identity["kind"];
  /** Cheap shape test: does this token look like something this verifier handles? */
  accepts(token: string): boolean;
  verify(token: string): Promise<VerifyResult>;
  /** Issuer URLs, for OAuth verifiers (PRM `authorization_servers`). */
  readonly issuers?: readonly string[];
  close?(): Promise<void>;
}
