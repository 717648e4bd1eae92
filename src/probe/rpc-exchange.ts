/**
 * One JSON-RPC exchange over MCP Streamable HTTP, spoken by hand so the probe sees every status code,
 * header and byte the server sends (an SDK client hides exactly what a monitor needs to report).
 * Internal to `probe/`; not exported from the package.
 */

/** A fetch-compatible function (global fetch, undici's fetch, or a test double). */
export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>;

/** What went wrong below HTTP: the request never produced a status line. */
export type TransportFailure = "timeout" | "unreachable";

/** The outcome of one HTTP request the probe makes. */
export interface Exchange {
  /** HTTP status, or 0 when no response arrived. */
  httpStatus: number;
  latencyMs: number;
  headers?: Headers;
  /** The JSON-RPC message answering our id, when one was found. */
  message?: JsonRpcReply;
  /** Set when no status line arrived (connection refused, DNS, TLS, timeout). */
  failure?: TransportFailure;
  /** Why the body was not a usable JSON-RPC reply, in words. */
  bodyProblem?: string;
  /** Words for a transport failure; never contains a header value. */
  detail?: string;
}

export interface JsonRpcReply {
  id?: unknown;
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: unknown };
}

export interface ExchangeOptions {
  fetch: FetchLike;
  url: string;
  method: "POST" | "DELETE";
  headers: Record<string, string>;
  body?: unknown;
  /** Epoch ms after which the request is abandoned as a timeout. */
  deadline: number;
  /** Read at most this many bytes of a body (a misbehaving server must not exhaust memory). */
  maxBodyBytes?: number;
}

const DEFAULT_MAX_BODY = 4 * 1024 * 1024;

/**
 * Send one request and read the JSON-RPC reply with the same id, from a JSON or an SSE body
 * (MCP Streamable HTTP: "The client MUST support both these cases").
 */
export async function exchange(opts: ExchangeOptions): Promise<Exchange> {
  const started = performance.now();
  const remaining = opts.deadline - Date.now();
  const elapsed = () => Math.round((performance.now() - started) * 10) / 10;
  if (remaining <= 0) return { httpStatus: 0, latencyMs: 0, failure: "timeout", detail: "no time left" };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), remaining);
  try {
    const init: RequestInit = {
      method: opts.method,
      headers: opts.headers,
      signal: controller.signal,
      redirect: "manual",
    };
    if (opts.body !== undefined) init.body = JSON.stringify(opts.body);
    let res: Response;
    try {
      res = await opts.fetch(opts.url, init);
    } catch (err) {
      return { httpStatus: 0, latencyMs: elapsed(), ...describeFetchError(err, controller.signal.aborted) };
    }
    const out: Exchange = { httpStatus: res.status, latencyMs: 0, headers: res.headers };
    const requestId = (opts.body as { id?: unknown } | undefined)?.id;
    try {
      if (opts.method === "POST" && res.status >= 200 && res.status < 300) {
        const read = await readReply(res, requestId, opts.maxBodyBytes ?? DEFAULT_MAX_BODY);
        if ("message" in read) out.message = read.message;
        else out.bodyProblem = read.problem;
      } else if (res.status >= 400 && res.status < 500 && res.status !== 401 && res.status !== 403) {
        // A JSON-RPC error body on a 4xx tells an unsupported era from a non-MCP server (SH-0728 "fall back on a 400").
        const read = await readReply(res, requestId, 64 * 1024);
        if ("message" in read) out.message = read.message;
        else out.bodyProblem = read.problem;
      } else {
        await res.body?.cancel().catch(() => {});
      }
    } catch (err) {
      if (controller.signal.aborted)
        return { ...out, latencyMs: elapsed(), failure: "timeout", detail: "body not received in time" };
      out.bodyProblem = `body could not be read (${errorCode(err) ?? "error"})`;
    }
    out.latencyMs = elapsed();
    return out;
  } finally {
    clearTimeout(timer);
  }
}

function describeFetchError(err: unknown, aborted: boolean): { failure: TransportFailure; detail: string } {
  if (aborted || (err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError"))) {
    return { failure: "timeout", detail: "no response in time" };
  }
  const code = errorCode(err);
  const words: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ENOTFOUND: "host name not found",
    EAI_AGAIN: "host name lookup failed",
    ECONNRESET: "connection reset",
    EHOSTUNREACH: "host unreachable",
    ENETUNREACH: "network unreachable",
    UND_ERR_SOCKET: "connection closed by the server",
    UND_ERR_CONNECT_TIMEOUT: "connect timed out",
    UND_ERR_HEADERS_TIMEOUT: "no response headers in time",
    CERT_HAS_EXPIRED: "TLS certificate has expired",
    DEPTH_ZERO_SELF_SIGNED_CERT: "TLS certificate is self-signed",
    SELF_SIGNED_CERT_IN_CHAIN: "TLS certificate chain is not trusted",
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: "TLS certificate chain is not trusted",
    ERR_TLS_CERT_ALTNAME_INVALID: "TLS certificate does not match the host name",
  };
  if (code === "UND_ERR_CONNECT_TIMEOUT" || code === "UND_ERR_HEADERS_TIMEOUT") {
    return { failure: "timeout", detail: words[code]! };
  }
  if (code) return { failure: "unreachable", detail: words[code] ?? `network error ${code}` };
  // No code: undici's own refusals ("bad port", "invalid URL"); their messages carry no header value.
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : "";
  return { failure: "unreachable", detail: cause ? `network error: ${cause.slice(0, 80)}` : "network error" };
}

/** The `code` of an error or of its cause chain (undici wraps socket errors in `TypeError: fetch failed`). */
function errorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e && typeof e === "object"; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

type ReadOutcome = { message: JsonRpcReply } | { problem: string };

async function readReply(res: Response, id: unknown, maxBytes: number): Promise<ReadOutcome> {
  const type = (res.headers.get("content-type") ?? "").toLowerCase();
  if (type.includes("text/event-stream")) return readSse(res, id, maxBytes);
  if (!type.includes("application/json")) {
    await res.body?.cancel().catch(() => {});
    return { problem: `answered ${type.split(";")[0] || "no content type"}, not JSON-RPC` };
  }
  const text = await readText(res, maxBytes);
  if (text === undefined) return { problem: "body too large" };
  return pickReply(parseJson(text), id);
}

/** Read SSE events until the one carrying our response (2025-11-25 servers may first send an empty priming event). */
async function readSse(res: Response, id: unknown, maxBytes: number): Promise<ReadOutcome> {
  if (!res.body) return { problem: "empty event stream" };
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let total = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (value) {
        total += value.byteLength;
        if (total > maxBytes) return { problem: "event stream too large" };
        buffer += decoder.decode(value, { stream: true });
      }
      if (done) buffer += "\n\n";
      let sep = findEventEnd(buffer);
      while (sep) {
        const raw = buffer.slice(0, sep.index);
        buffer = buffer.slice(sep.index + sep.length);
        const data = raw
          .split(/\r?\n|\r/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
          .join("\n");
        if (data.trim() !== "") {
          const picked = pickReply(parseJson(data), id);
          if ("message" in picked) return picked;
        }
        sep = findEventEnd(buffer);
      }
      if (done) return { problem: "event stream ended without a response" };
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

function findEventEnd(buffer: string): { index: number; length: number } | undefined {
  const m = /\r\n\r\n|\n\n|\r\r/.exec(buffer);
  return m ? { index: m.index, length: m[0].length } : undefined;
}

async function readText(res: Response, maxBytes: number): Promise<string | undefined> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) return undefined;
      chunks.push(value);
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function pickReply(value: unknown, id: unknown): ReadOutcome {
  const candidates = Array.isArray(value) ? value : [value];
  for (const c of candidates) {
    if (!c || typeof c !== "object" || (c as { jsonrpc?: unknown }).jsonrpc !== "2.0") continue;
    const msg = c as JsonRpcReply & { method?: unknown };
    if (msg.method !== undefined) continue; // a server request or notification, not our answer
    const hasResult = msg.result !== undefined && typeof msg.result === "object" && msg.result !== null;
    const hasError = msg.error !== undefined && typeof msg.error === "object" && msg.error !== null;
    if (!hasResult && !hasError) continue;
    // An error without an id (or with a null id) answers the request that caused it.
    if (msg.id === id || (hasError && (msg.id === undefined || msg.id === null))) return { message: msg };
  }
  return { problem: value === undefined ? "body is not JSON" : "no JSON-RPC response to our request" };
}
