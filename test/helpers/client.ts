import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

/** Connect the official SDK 1.x client to `url` with a Bearer credential. */
export async function connectClient(
  url: string,
  token?: string,
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : {},
  });
  const client = new Client({ name: "mcpgate-test", version: "1.0.0" });
  await client.connect(transport);
  return { client, transport };
}

/** A raw MCP POST (for the cases the SDK client cannot produce). */
export async function rawPost(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; text: string; json(): unknown }> {
  const res = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) };
}

export const INIT = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
};

/**
 * Open a 2025-era session with a raw `initialize` (and `notifications/initialized`): the headers
 * every later request of the session carries. Throws unless the initialize is answered 200.
 *
 * @example const h = await rawSession(url, "Bearer k"); await rawPost(url, ping, h);
 */
export async function rawSession(url: string, authorization: string): Promise<Record<string, string>> {
  const auth = { authorization };
  const init = await rawPost(url, INIT, auth);
  if (init.status !== 200) throw new Error(`initialize: ${init.status} ${init.text.slice(0, 200)}`);
  const h = {
    ...auth,
    "mcp-session-id": init.headers.get("mcp-session-id")!,
    "mcp-protocol-version": "2025-06-18",
  };
  await rawPost(url, { jsonrpc: "2.0", method: "notifications/initialized" }, h);
  return h;
}

/** Parse the JSON-RPC messages out of an SSE or JSON response body. */
export function messagesOf(text: string): Array<Record<string, unknown>> {
  const t = text.trim();
  if (t.startsWith("{") || t.startsWith("[")) {
    const v = JSON.parse(t);
    return Array.isArray(v) ? v : [v];
  }
  return t
    .split(/\n\n/)
    .flatMap((ev) =>
      ev
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trim()),
    )
    .filter((d) => d.length > 0)
    .map((d) => JSON.parse(d));
}

/**
 * Send a POST over a raw socket and return the status line (for cases where fetch gives up early,
 * e.g. a server that answers 413 before the body is sent).
 */
export async function rawStatusLine(
  url: string,
  headers: Record<string, string>,
  body: string,
): Promise<string> {
  const { connect } = await import("node:net");
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname);
    let data = "";
    sock.on("data", (d) => {
      data += d;
      const end = data.indexOf("\r\n");
      if (end !== -1) {
        resolve(data.slice(0, end));
        sock.destroy();
      }
    });
    sock.on("error", (err) => (data ? resolve(data.split("\r\n")[0]!) : reject(err)));
    const head = Object.entries({
      host: u.host,
      "content-length": String(Buffer.byteLength(body)),
      ...headers,
    })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    sock.write(`POST ${u.pathname} HTTP/1.1\r\n${head}\r\n`);
    sock.write(body, () => {});
  });
}
