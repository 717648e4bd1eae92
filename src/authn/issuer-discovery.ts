import { McpGateError } from "../core/errors.js";
import { fetchJson } from "./http-json.js";

/** The fields of RFC 8414 / OpenID Connect Discovery metadata that a resource server uses. */
export interface IssuerMetadata {
  issuer: string;
  jwks_uri?: string;
  introspection_endpoint?: string;
  /** RFC 8414 §2: where RFC 8693 token exchange is sent (`identity: token-exchange`). */
  token_endpoint?: string;
  /** The URL the metadata was read from. */
  source: string;
}

/**
 * The metadata URLs to try for an issuer, in the order the MCP spec gives clients (2025-11-25
 * "Authorization Server Metadata Discovery"): RFC 8414 §3.1 path insertion for
 * `oauth-authorization-server`, then OIDC with path insertion, then OIDC Discovery 1.0 §4
 * (path appended). Without a path component the three collapse into two.
 *
 * @example
 * metadataUrls("https://as.example.com/tenant1")
 * // ["https://as.example.com/.well-known/oauth-authorization-server/tenant1",
 * //  "https://as.example.com/.well-known/openid-configuration/tenant1",
 * //  "https://as.example.com/tenant1/.well-known/openid-configuration"]
 */
export function metadataUrls(issuer: string): string[] {
  const u = new URL(issuer);
  const path = u.pathname.replace(/\/+$/, "");
  const origin = u.origin;
  if (path === "") {
    return [`${origin}/.well-known/oauth-authorization-server`, `${origin}/.well-known/openid-configuration`];
  }
  return [
    `${origin}/.well-known/oauth-authorization-server${path}`,
    `${origin}/.well-known/openid-configuration${path}`,
    `${origin}${path}/.well-known/openid-configuration`,
  ];
}

/**
 * Fetch an issuer's metadata and check it. RFC 8414 §3.3: the `issuer` in the document MUST be
 * identical to the issuer it was requested for, or the document must not be used (a mismatch
 * would let one issuer point us at another's keys).
 *
 * @example
 * const meta = await discoverIssuer("https://auth.example.com", { timeoutMs: 5000 });
 * meta.jwks_uri; // "https://auth.example.com/jwks"
 */
export async function discoverIssuer(
  issuer: string,
  options: { timeoutMs: number },
): Promise<IssuerMetadata> {
  let lastProblem = "no metadata document found";
  for (const url of metadataUrls(issuer)) {
    const res = await fetchJson(url, { timeoutMs: options.timeoutMs });
    if (!res.ok) {
      lastProblem = `metadata fetch failed (${res.error})`;
      continue;
    }
    if (res.status !== 200) {
      lastProblem = `metadata answered HTTP ${res.status}`;
      continue;
    }
    const doc = res.json as Record<string, unknown> | null;
    if (!doc || typeof doc !== "object" || doc.issuer !== issuer) {
      // Do not try the next URL: a document that names another issuer is a misconfiguration to report.
      throw new McpGateError("ERR_ISSUER_DISCOVERY", `metadata at ${url} does not name issuer ${issuer}`);
    }
    const meta: IssuerMetadata = { issuer, source: url };
    if (typeof doc.jwks_uri === "string") meta.jwks_uri = doc.jwks_uri;
    if (typeof doc.introspection_endpoint === "string")
      meta.introspection_endpoint = doc.introspection_endpoint;
    if (typeof doc.token_endpoint === "string") meta.token_endpoint = doc.token_endpoint;
    return meta;
  }
  throw new McpGateError(
    "ERR_ISSUER_DISCOVERY",
    `cannot discover metadata for issuer ${issuer}: ${lastProblem}`,
  );
}
