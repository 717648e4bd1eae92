import type { IncomingMessage, ServerResponse } from "node:http";
import type { CredentialVerifier } from "../authn/verifier.js";
import type { Gate } from "../gate/gate.js";

/** RFC 9728 §2 metadata document (the fields an MCP client reads). */
export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  scopes_supported?: string[];
  bearer_methods_supported: string[];
  resource_name?: string;
}

/**
 * Build the PRM document for a gate, or undefined when no OAuth issuer is configured (API keys only:
 * there is no authorization server to discover, DESIGN.md §2).
 *
 * @example buildProtectedResourceMetadata(gate)?.authorization_servers // ["https://auth.example.com"]
 */
export function buildProtectedResourceMetadata(gate: Gate): ProtectedResourceMetadata | undefined {
  const servers = gate.options.verifiers.flatMap((v: CredentialVerifier) =>
    v.kind === "oauth2" ? [...(v.issuers ?? [])] : [],
  );
  if (!gate.oauth || servers.length === 0) return undefined;
  // MCP A-0728: SHOULD NOT advertise offline_access.
  const scopes = (gate.options.authorizer?.scopesSupported() ?? []).filter((s) => s !== "offline_access");
  return {
    resource: gate.options.publicUrl,
    authorization_servers: [...new Set(servers)],
    ...(scopes.length ? { scopes_supported: scopes } : {}),
    bearer_methods_supported: ["header"],
    resource_name: "MCP server (mcpgate)",
  };
}

/** The two paths RFC 9728 §3.1 and MCP A-1125 name: the root and the path-inserted form. */
export function protectedResourceMetadataPaths(publicUrl: string): string[] {
  const cached = pathsByUrl.get(publicUrl);
  if (cached) return [...cached];
  const path = new URL(publicUrl).pathname.replace(/\/$/, "");
  const base = "/.well-known/oauth-protected-resource";
  const paths = path ? [base, `${base}${path}`] : [base];
  // Asked on every request; a gateway has one public URL (a library user a handful).
  if (pathsByUrl.size < 64) pathsByUrl.set(publicUrl, paths);
  return [...paths];
}

const pathsByUrl = new Map<string, readonly string[]>();

/**
 * Serve the PRM document (no authentication: clients fetch it before they hold a token). Returns
 * true when the request was for a PRM path and has been answered (404 in API-key-only mode).
 *
 * @example if (handleProtectedResourceMetadata(gate, req, res)) return;
 */
export function handleProtectedResourceMetadata(
  gate: Gate,
  req: IncomingMessage,
  res: ServerResponse,
): boolean {
  const path = (req.url ?? "/").split("?")[0]!;
  if (!protectedResourceMetadataPaths(gate.options.publicUrl).includes(path)) return false;
  const doc = buildProtectedResourceMetadata(gate);
  if (!doc) {
    res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: "not_found" }));
    return true;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD" }).end();
    return true;
  }
  res
    .writeHead(200, {
      "content-type": "application/json",
      "cache-control": "public, max-age=300",
      "access-control-allow-origin": "*",
    })
    .end(req.method === "HEAD" ? undefined : JSON.stringify(doc));
  return true;
}
