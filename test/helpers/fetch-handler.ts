import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * Answer a `node:http` request with a web-standard fetch handler (the v2 SDK's `createMcpHandler`
 * speaks `Request → Response`). The body is read whole and the response buffered: enough for
 * test upstreams, which answer JSON or short SSE streams.
 *
 * @example
 * createServer((req, res) => answerWithFetchHandler(req, res, (r) => handler.fetch(r)));
 */
export async function answerWithFetchHandler(
  req: IncomingMessage,
  res: ServerResponse,
  fetchHandler: (request: Request) => Promise<Response>,
): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
  const init: RequestInit = { method: req.method ?? "GET", headers };
  if (req.method === "POST") init.body = Buffer.concat(chunks);
  const response = await fetchHandler(new Request(`http://127.0.0.1${req.url}`, init));
  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.end(Buffer.from(await response.arrayBuffer()));
}
