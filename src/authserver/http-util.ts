import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * Read a request body up to `limit` bytes; undefined when larger (the caller answers 413) or when
 * the client stops sending.
 */
export async function readLimitedBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > limit) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) return undefined;
      chunks.push(chunk);
    }
  } catch {
    return undefined;
  }
  return Buffer.concat(chunks);
}

/** Parse an `application/x-www-form-urlencoded` body (the login and consent forms). */
export async function readForm(req: IncomingMessage, limit = 8 * 1024): Promise<URLSearchParams | undefined> {
  const type = String(req.headers["content-type"] ?? "")
    .split(";")[0]!
    .trim()
    .toLowerCase();
  if (type !== "application/x-www-form-urlencoded") return undefined;
  const body = await readLimitedBody(req, limit);
  return body ? new URLSearchParams(body.toString("utf8")) : undefined;
}

/** A JSON error answer in the RFC 6749 §5.2 shape. */
export function sendOAuthError(
  res: ServerResponse,
  status: number,
  error: string,
  description: string,
  headers: Record<string, string> = {},
): void {
  res
    .writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers })
    .end(JSON.stringify({ error, error_description: description }));
}

/** One cookie's value from the Cookie header, or undefined. */
export function cookieValue(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}
