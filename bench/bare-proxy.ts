/**
 * The baseline the gateway is compared with: a bare pass-through reverse proxy with no MCP
 * awareness — one SHA-256 key check (constant-time), then method, headers (minus Authorization and
 * hop-by-hop) and body relayed to the upstream through a keep-alive undici pool, the answer piped
 * back with backpressure. Prints {"url"} on stdout.
 *   MCP_API_KEY=… npx tsx bench/bare-proxy.ts <upstream url>
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { pipeline } from "node:stream/promises";
import { Pool } from "undici";

const target = new URL(process.argv[2]!);
const expected = createHash("sha256")
  .update(process.env.MCP_API_KEY ?? "")
  .digest();
const pool = new Pool(target.origin, { connections: 128, pipelining: 1 });
const HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "host",
  "authorization",
  "content-length",
]);

const server = createServer(async (req, res) => {
  const auth = req.headers.authorization ?? "";
  const given = createHash("sha256")
    .update(auth.startsWith("Bearer ") ? auth.slice(7) : "")
    .digest();
  if (!timingSafeEqual(given, expected)) {
    req.resume();
    res.writeHead(401, { "www-authenticate": 'Bearer realm="mcp"' }).end();
    return;
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && !HOP.has(k)) headers[k] = v;
  try {
    const up = await pool.request({
      path: target.pathname,
      method: req.method as "POST",
      headers,
      body: req.method === "POST" ? req : null,
    });
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
    res.writeHead(up.statusCode, out);
    await pipeline(up.body, res);
  } catch {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  }
});
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
process.stdout.write(
  `${JSON.stringify({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp` })}\n`,
);
process.on("SIGTERM", () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
