/** Options of {@link fetchJson}. */
export interface FetchJsonOptions {
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
  /** Abort after this long (connect, headers and body together). */
  timeoutMs: number;
  /** Refuse a response body larger than this. Default 256 KiB. */
  maxBytes?: number;
}

/** The outcome of {@link fetchJson}: an HTTP status with parsed JSON, or a transport failure. */
export type FetchJsonResult =
  | { ok: true; status: number; json: unknown }
  | { ok: false; error: "timeout" | "network" | "too_large" | "not_json"; status?: number };

/**
 * GET/POST a URL with undici and parse a bounded JSON body. Never throws for network trouble:
 * an authorization server being down is an expected condition the caller must map to a result.
 * No redirects are followed (an authorization server's endpoints are configured, not discovered by redirect).
 *
 * @example
 * const r = await fetchJson("https://as.example.com/.well-known/oauth-authorization-server", { timeoutMs: 5000 });
 */
export async function fetchJson(url: string, options: FetchJsonOptions): Promise<FetchJsonResult> {
  const maxBytes = options.maxBytes ?? 256 * 1024;
  const signal = AbortSignal.timeout(options.timeoutMs);
  let status: number;
  let text = "";
  try {
    // Loaded on first use, so that importing the `mcpgate` root entry loads no HTTP client.
    const { request } = await import("undici");
    const res = await request(url, {
      method: options.method ?? "GET",
      headers: { accept: "application/json", ...options.headers },
      body: options.body,
      signal,
    });
    status = res.statusCode;
    let size = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) {
        res.body.destroy();
        return { ok: false, error: "too_large", status };
      }
      chunks.push(chunk as Buffer);
    }
    text = Buffer.concat(chunks).toString("utf8");
  } catch {
    return { ok: false, error: signal.aborted ? "timeout" : "network" };
  }
  try {
    return { ok: true, status, json: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, error: "not_json", status };
  }
}
