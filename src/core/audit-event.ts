/**
 * A security event (DESIGN.md §2 "audit"). Shared vocabulary between the gate, which emits them,
 * and observe/, which writes them. Fields hold display prefixes only, never secrets.
 */
export type AuditEventType =
  | "auth_success"
  | "auth_failure"
  | "session_bound"
  | "session_mismatch"
  | "session_closed"
  | "denied"
  | "rate_limited"
  | "lockout"
  | "key_created"
  | "key_revoked"
  | "key_rotated"
  /** `mcpgate keys rotate-signing` made a new signing key the one that signs (`other` = its kid). */
  | "signing_key_rotated"
  | "store_error"
  /** The upstream answered 401/403 to the gateway's own credential (answered 502 to the caller). */
  | "upstream_credentials"
  /**
   * The gateway ended a stream or a long request while it lasted (`reason`: `credential_ended` — the
   * caller's credential was revoked or expired, or the upstream identity expired —, or `client_too_slow`).
   */
  | "stream_ended"
  /** The upstream could not be told who calls (token exchange failed, or refused for keys): 502, nothing forwarded. */
  | "identity_refused"
  /** An RFC 8693 token exchange issued the upstream a token; `detail.act` names the actor (§4.1). */
  | "identity_exchanged"
  /** The gateway's authorization server (`authServer`): a person signed in (`detail.method`: apiKey, oidc). */
  | "oauth_login"
  /** A sign-in was refused (`reason`): a wrong key, or the IdP's answer not accepted. */
  | "oauth_login_refused"
  /** A person approved or denied a client's access on the consent page (`detail.decision`). */
  | "oauth_consent"
  /** A client registered (RFC 7591); `detail.client` is its client_id. */
  | "oauth_client_registered"
  /** The token endpoint issued tokens (`detail.grant`: authorization_code, refresh_token). */
  | "oauth_token_issued"
  /** The token endpoint refused (`reason`: the OAuth error, e.g. invalid_grant). */
  | "oauth_token_refused"
  /** A grant was revoked (RFC 7009 revocation, or refresh-token reuse detected). */
  | "oauth_grant_revoked";

export interface AuditEvent {
  type: AuditEventType;
  /** ISO-8601 time. */
  time: string;
  /** Display prefix of the acting principal ("mcpg_7Hq2xK9a", "static:3f9a1c2e", "oauth:…"). */
  actor?: string;
  /** Source address as the guard sees it. */
  ip?: string;
  requestId?: string;
  reason?: string;
  method?: string;
  tool?: string;
  /** Other display prefix involved (e.g. the session's owner on a mismatch). */
  other?: string;
  sessionId?: string;
  /** The OpenTelemetry trace of the request, when tracing is on (docs/tracing.md): leads to its trace. */
  trace_id?: string;
  detail?: Record<string, string | number | boolean | undefined>;
}
