import { isAllowedRedirectUri, isLoopbackHost } from "./client-policy.js";

/**
 * Development only (`authServer.clients.allowLoopbackMetadataDocuments`): Client ID Metadata
 * Documents served over http on loopback, which oidc-provider's CIMD support (https only, public
 * addresses only) refuses by design. The same rules apply as to the real thing (MCP
 * client-registration "Client ID Metadata Documents"): bounded size and time, the document's
 * `client_id` equal to its URL, no shared secret, redirect URIs https or loopback; cached by
 * `Cache-Control: max-age` within [30 s, 1 day].
 */

/** Most bytes of a metadata document (also given to oidc-provider for the https path). */
export const MAX_METADATA_DOCUMENT_BYTES = 16 * 1024;
/** Time allowed to fetch one document. */
export const METADATA_FETCH_TIMEOUT_MS = 2500;

const cache = new Map<string, { properties: Record<string, unknown>; until: number }>();

/** Whether a client_id is an http URL on loopback (the development form of a CIMD client_id). */
export function isLoopbackMetadataUrl(clientId: string): boolean {
  if (!clientId.startsWith("http://") || clientId.includes("#")) return false;
  try {
    const u = new URL(clientId);
    return u.protocol === "http:" && isLoopbackHost(u.hostname) && !u.username && !u.password;
  } catch {
    return false;
  }
}

async function readBounded(res: Response, limit: number): Promise<string | undefined> {
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > limit || !res.body) {
    await res.body?.cancel().catch(() => {});
    return declared > limit ? undefined : "";
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > limit) return undefined; // leaving the loop cancels the body
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function maxAgeMs(res: Response): number {
  const m = /(?:^|,)\s*max-age\s*=\s*(\d+)/i.exec(res.headers.get("cache-control") ?? "");
  const sec = m ? Number(m[1]) : 30;
  return Math.max(30, Math.min(86_400, sec)) * 1000;
}

/**
 * Fetch and validate a loopback metadata document; undefined when it is unusable (the client is
 * then unknown, and oidc-provider answers `invalid_client`).
 *
 * @example const props = await fetchLoopbackMetadata("http://127.0.0.1:5173/client.json");
 */
export async function fetchLoopbackMetadata(clientId: string): Promise<Record<string, unknown> | undefined> {
  const hit = cache.get(clientId);
  if (hit && hit.until > Date.now()) return structuredClone(hit.properties);
  let res: Response;
  try {
    res = await fetch(clientId, {
      headers: { accept: "application/json" },
      redirect: "manual",
      signal: AbortSignal.timeout(METADATA_FETCH_TIMEOUT_MS),
    });
  } catch {
    return undefined;
  }
  if (res.status !== 200) {
    await res.body?.cancel().catch(() => {});
    return undefined;
  }
  let text: string | undefined;
  try {
    text = await readBounded(res, MAX_METADATA_DOCUMENT_BYTES);
  } catch {
    return undefined; // timed out mid-body
  }
  if (text === undefined) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isValidDocument(doc, clientId)) return undefined;
  const properties = { token_endpoint_auth_method: "none", ...doc };
  if (cache.size >= 100) cache.delete(cache.keys().next().value!);
  cache.set(clientId, { properties, until: Date.now() + maxAgeMs(res) });
  return structuredClone(properties);
}

function isValidDocument(doc: unknown, clientId: string): doc is Record<string, unknown> {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return false;
  const d = doc as Record<string, unknown>;
  // The document must name itself: a document copied from elsewhere cannot claim this URL.
  if (d.client_id !== clientId) return false;
  if ("client_secret" in d || "client_secret_expires_at" in d) return false;
  if (d.token_endpoint_auth_method !== undefined && d.token_endpoint_auth_method !== "none") return false;
  const uris = d.redirect_uris;
  return Array.isArray(uris) && uris.length > 0 && uris.length <= 20 && uris.every(isAllowedRedirectUri);
}
