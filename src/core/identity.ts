/**
 * The verified caller. Every credential kind (static key, stored API key, OAuth token) resolves
 * to one of these; everything downstream of authentication reads only this.
 *
 * @example
 * const id: Identity = { principal: "key:7Hq2xK9a", kind: "api_key", subject: "7Hq2xK9a", scopes: ["tools:call"] };
 */
export interface Identity {
  /** Stable across credential refreshes: "key:<keyId>" | "oauth:<iss>#<sub>" | "static". */
  principal: string;
  kind: "api_key" | "oauth2" | "static_key";
  /** Key id or OAuth `sub`. */
  subject: string;
  tenant?: string;
  scopes: string[];
  /** Safe to log: "mcpg_7Hq2xK9a" for a stored key, "static:3f9a1c2e" (a fingerprint) for the static key. */
  displayPrefix?: string;
  /** Epoch seconds. */
  expiresAt?: number;
  /** A read-only monitoring credential. */
  probe?: boolean;
  /** OAuth client id (`client_id`/`azp`), when the token carries one. */
  clientId?: string;
  /** Per-key overrides (rate limits) carried from the key record. */
  limits?: { perMinute?: number };
}

/**
 * The official SDK's `AuthInfo` shape (`@modelcontextprotocol/sdk/server/auth/types.js`), restated
 * structurally so that core imports no framework. The SDK's transports read `req.auth` and hand it
 * to tool handlers as `extra.authInfo`.
 */
export interface SdkAuthInfo {
  token: string;
  clientId: string;
  scopes: string[];
  expiresAt?: number;
  resource?: URL;
  extra?: Record<string, unknown>;
}

/**
 * Map an identity to the SDK's `AuthInfo`. The raw credential is handed to in-process tool handlers
 * only (that is what the SDK's own `requireBearerAuth` does); the gateway never forwards it.
 *
 * @example
 * req.auth = toAuthInfo(identity, token, new URL("https://mcp.example.com/mcp"));
 */
export function toAuthInfo(identity: Identity, token: string, resource?: URL): SdkAuthInfo {
  const info: SdkAuthInfo = {
    token,
    clientId: identity.clientId ?? identity.subject,
    scopes: [...identity.scopes],
    extra: {
      principal: identity.principal,
      kind: identity.kind,
      subject: identity.subject,
      tenant: identity.tenant,
      displayPrefix: identity.displayPrefix,
      probe: identity.probe === true,
    },
  };
  if (identity.expiresAt !== undefined) info.expiresAt = identity.expiresAt;
  if (resource) info.resource = resource;
  return info;
}

/** A string that is safe to log for an identity: its display prefix, or its principal. */
export function displayOf(identity: Identity | undefined): string | undefined {
  if (!identity) return undefined;
  return identity.displayPrefix ?? identity.principal;
}

/**
 * Session ids are bearer-like handles: logs, audit events and spans carry only a short prefix.
 *
 * @example redactSessionId("3f9a1c2e-5b7d-4f11-9a2b-0c1d2e3f4a5b") // "3f9a1c2e…"
 */
export function redactSessionId(id: string): string {
  return id.length > 8 ? `${id.slice(0, 8)}…` : id;
}
