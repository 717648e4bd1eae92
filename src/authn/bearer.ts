/**
 * RFC 6750 §2.1 Authorization header parsing, strict: exactly one header, scheme "Bearer"
 * (case-insensitive, RFC 9110 §11.1), one space, a b64token, nothing else.
 */
export type BearerResult = { ok: true; token: string } | { ok: false; reason: "missing" | "malformed" };

// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Upper bound on a credential we are willing to look at (a 100 KB "token" is refused unread). */
export const MAX_TOKEN_LENGTH = 16 * 1024;

/**
 * Extract the bearer token from the raw Authorization header value(s).
 *
 * @example parseBearer("Bearer abc") // { ok: true, token: "abc" }
 */
export function parseBearer(header: string | string[] | undefined): BearerResult {
  if (header === undefined) return { ok: false, reason: "missing" };
  if (Array.isArray(header)) {
    if (header.length === 0) return { ok: false, reason: "missing" };
    if (header.length > 1) return { ok: false, reason: "malformed" };
    header = header[0]!;
  }
  if (header === "") return { ok: false, reason: "missing" };
  // Node joins repeated Authorization headers with ", "; a comma never appears in a b64token.
  if (header.includes(",")) return { ok: false, reason: "malformed" };
  const space = header.indexOf(" ");
  if (space <= 0) return { ok: false, reason: "malformed" };
  const scheme = header.slice(0, space);
  const token = header.slice(space + 1);
  if (scheme.toLowerCase() !== "bearer") return { ok: false, reason: "malformed" };
  if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: "malformed" };
  if (!B64TOKEN.test(token)) return { ok: false, reason: "malformed" };
  return { ok: true, token };
}
