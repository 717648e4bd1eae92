import { Agent, fetch as undiciFetch } from "undici";
import type { ChallengeState, ProbeStatus, ProbeStep } from "../stores/probe-history.js";
import { type Exchange, exchange, type FetchLike, type JsonRpcReply } from "./rpc-exchange.js";
import { hashToolSchemas, type ToolShape } from "./schema-hash.js";

export type { ChallengeState, ProbeStatus, ProbeStep };

/** The DESIGN.md §6 `probe --json` shape, plus what a monitor needs to explain a failure. */
export interface ProbeResult {
  status: ProbeStatus;
  /** Status of the step that decided the outcome (the failing one, or tools/list when up); 0 = none. */
  httpStatus: number;
  latencyMs: number;
  steps: ProbeStep[];
  /** Number of tools listed, or null when tools/list was not reached. */
  tools: number | null;
  /** {@link hashToolSchemas} of the listed tools, or null. */
  schemaHash: string | null;
  challenge: ChallengeState;
  /** The protocol revision spoken: "2026-07-28", or the one `initialize` negotiated. */
  protocolVersion: string | null;
  /** Why the endpoint is not up, in words; absent when up. Never contains the key. */
  error?: string;
  /** The probed URL without user info. */
  url: string;
  checkedAt: string;
}

export interface ProbeOptions {
  /** Bearer credential (a read-only probe key); absent = probe without credentials. */
  key?: string;
  /** Extra request headers (e.g. a routing header). Protocol headers cannot be overridden. */
  headers?: Record<string, string>;
  /** Deadline for the whole check. Default 10 000. */
  timeoutMs?: number;
  /** Replaces the HTTP client (default: undici with a fresh connection pool per check). */
  fetch?: FetchLike;
}

/** The 2026-07-28 revision, whose `server/discover` is tried first (SH-0728: clients probe with a modern request). */
export const MODERN_PROTOCOL_VERSION = "2026-07-28";
/** What `initialize` offers when the server is 2025-era. */
export const LEGACY_PROTOCOL_VERSION = "2025-11-25";

const CLIENT_INFO = { name: "mcpgate-probe", version: "0.1.0" };
const MAX_PAGES = 50;

/**
 * Check one MCP endpoint the way a client would and say whether it is up, and if not, why:
 * (a) an unauthenticated request (is there a challenge?), (b) `server/discover` (2026-07-28) or
 * `initialize` (2025 era), picked from what the server accepts, (c) `tools/list` (count and schema
 * hash), (d) `ping` (2025 era), (e) `DELETE` of the session. Never throws for a failing endpoint;
 * throws `TypeError` for a bad URL or option.
 *
 * @example
 * const r = await probeEndpoint("https://mcp.example.com/mcp", { key: process.env.MCPGATE_PROBE_KEY });
 * if (r.status !== "up") console.error(r.status, r.error);
 */
export async function probeEndpoint(url: string, options: ProbeOptions = {}): Promise<ProbeResult> {
  const target = parseTarget(url);
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new TypeError("probeEndpoint: timeoutMs must be a positive number");
  if (options.key !== undefined && (options.key === "" || /[\r\n\0]/.test(options.key))) {
    throw new TypeError("probeEndpoint: key must be a non-empty single-line string");
  }
  const userHeaders = checkHeaders(options.headers ?? {});
  let agent: Agent | undefined;
  let fetchFn = options.fetch;
  if (!fetchFn) {
    // A pool per check: each probe measures a fresh connection, and nothing lingers afterwards.
    const pool = new Agent({ keepAliveTimeout: 1000, connections: 2 });
    agent = pool;
    fetchFn = (input, init) =>
      undiciFetch(input, { ...(init as object), dispatcher: pool }) as unknown as Promise<Response>;
  }
  const run = new ProbeRun(target, fetchFn, options.key, userHeaders, Date.now() + timeoutMs);
  try {
    return redactResult(await run.execute(), options.key);
  } finally {
    await agent?.destroy().catch(() => {});
  }
}

function parseTarget(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError("probeEndpoint: url must be an absolute http(s) URL");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new TypeError("probeEndpoint: url must use http or https");
  return u;
}

const RESERVED = new Set([
  "accept",
  "content-type",
  "content-length",
  "mcp-method",
  "mcp-name",
  "mcp-protocol-version",
  "mcp-session-id",
  "host",
]);

function checkHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name))
      throw new TypeError(`probeEndpoint: invalid header name "${name.slice(0, 40)}"`);
    if (/[\r\n\0]/.test(value)) throw new TypeError(`probeEndpoint: header ${name} has a line break`);
    if (!RESERVED.has(name.toLowerCase())) out[name] = value;
  }
  return out;
}

type Verdict = { status: Exclude<ProbeStatus, "up">; httpStatus: number; error: string };

class ProbeRun {
  readonly steps: ProbeStep[] = [];
  challenge: ChallengeState = "none";
  protocolVersion: string | null = null;
  sessionId: string | undefined;
  tools: ToolShape[] | null = null;
  nextId = 1;
  readonly started = performance.now();
  readonly endpoint: string;

  constructor(
    readonly target: URL,
    readonly fetch: FetchLike,
    readonly key: string | undefined,
    readonly userHeaders: Record<string, string>,
    readonly deadline: number,
  ) {
    const clean = new URL(target);
    clean.username = "";
    clean.password = "";
    this.endpoint = clean.toString();
  }

  async execute(): Promise<ProbeResult> {
    const verdict =
      (await this.checkChallenge()) ??
      (await this.negotiate()) ??
      (await this.listTools()) ??
      (await this.ping());
    await this.deleteSession();
    const listed = this.steps.find((s) => s.name === "tools/list");
    const result: ProbeResult = {
      status: verdict ? verdict.status : "up",
      httpStatus: verdict ? verdict.httpStatus : (listed?.httpStatus ?? 0),
      latencyMs: Math.round((performance.now() - this.started) * 10) / 10,
      steps: this.steps,
      tools: this.tools ? this.tools.length : null,
      schemaHash: this.tools ? hashToolSchemas(this.tools) : null,
      challenge: this.challenge,
      protocolVersion: this.protocolVersion,
      url: this.endpoint,
      checkedAt: new Date().toISOString(),
    };
    if (verdict) result.error = verdict.error;
    return result;
  }

  /** (a) Without credentials a protected endpoint must answer 401 with a challenge (RFC 6750 §3, MCP authorization). */
  async checkChallenge(): Promise<Verdict | undefined> {
    const ex = await this.post("server/discover", this.modernParams(), { auth: false, modern: true });
    const www = ex.headers?.get("www-authenticate") ?? "";
    if (ex.httpStatus === 401) this.challenge = /(^|,)\s*bearer(\s|,|$)/i.test(www) ? "ok" : "missing";
    else if (ex.httpStatus === 403) this.challenge = "missing";
    const answered = ex.httpStatus > 0;
    this.record(
      "unauthenticated",
      ex,
      answered && (this.challenge === "ok" || (this.challenge === "none" && !this.key)),
    );
    if (ex.failure || ex.httpStatus >= 500 || ex.httpStatus === 429)
      return this.transportVerdict(ex, "the unauthenticated request");
    return undefined;
  }

  /** (b) 2026-07-28 `server/discover` first; fall back to `initialize` when the server does not speak it. */
  async negotiate(): Promise<Verdict | undefined> {
    const disc = await this.post("server/discover", this.modernParams(), { modern: true });
    const fatal = this.transportVerdict(disc, "server/discover") ?? this.authVerdict(disc);
    if (fatal) {
      this.record("discover", disc, false);
      return fatal;
    }
    if (disc.httpStatus >= 200 && disc.httpStatus < 300 && disc.message?.result) {
      this.record("discover", disc, true);
      this.protocolVersion = MODERN_PROTOCOL_VERSION;
      return undefined;
    }
    const init = await this.post(
      "initialize",
      { protocolVersion: LEGACY_PROTOCOL_VERSION, capabilities: {}, clientInfo: CLIENT_INFO },
      { legacyInit: true },
    );
    const version = init.message?.result?.protocolVersion;
    const ok = init.httpStatus >= 200 && init.httpStatus < 300 && typeof version === "string";
    if (!ok) this.record("discover", disc, false);
    this.record("initialize", init, ok);
    const bad = this.transportVerdict(init, "initialize") ?? this.authVerdict(init);
    if (bad) return bad;
    if (!ok) {
      return {
        status: "protocol_error",
        httpStatus: init.httpStatus,
        error: `not an MCP endpoint: server/discover ${describeAnswer(disc)}; initialize ${describeAnswer(init)}`,
      };
    }
    this.protocolVersion = version;
    this.sessionId = init.headers?.get("mcp-session-id") ?? undefined;
    // Lifecycle: the client MUST send notifications/initialized before other requests; its answer (202) carries nothing to check.
    await exchange({
      fetch: this.fetch,
      url: this.target.toString(),
      method: "POST",
      headers: this.headers(true, { notification: true }),
      body: { jsonrpc: "2.0", method: "notifications/initialized" },
      deadline: this.deadline,
    });
    return undefined;
  }

  /** (c) every page of tools/list: count and schema hash. */
  async listTools(): Promise<Verdict | undefined> {
    const tools: ToolShape[] = [];
    let cursor: string | undefined;
    let latency = 0;
    let last: Exchange | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const params: Record<string, unknown> = this.modern() ? this.modernParams() : {};
      if (cursor !== undefined) params.cursor = cursor;
      last = await this.post("tools/list", params, { modern: this.modern() });
      latency += last.latencyMs;
      const bad =
        this.transportVerdict(last, "tools/list") ??
        this.authVerdict(last) ??
        this.rpcVerdict(last, "tools/list");
      const list = last.message?.result?.tools;
      if (bad || !Array.isArray(list)) {
        this.steps.push({
          name: "tools/list",
          httpStatus: last.httpStatus,
          latencyMs: round(latency),
          ok: false,
        });
        return (
          bad ?? {
            status: "protocol_error",
            httpStatus: last.httpStatus,
            error: "tools/list answered without a tools array",
          }
        );
      }
      for (const t of list) {
        if (t && typeof t === "object" && typeof (t as ToolShape).name === "string")
          tools.push(t as ToolShape);
      }
      const next = last.message?.result?.nextCursor;
      // 2026-07-28: an empty-string cursor is a valid cursor; only an absent one ends the list.
      if (typeof next !== "string" || (next === "" && !this.modern())) break;
      cursor = next;
    }
    this.steps.push({
      name: "tools/list",
      httpStatus: last?.httpStatus ?? 0,
      latencyMs: round(latency),
      ok: true,
    });
    this.tools = tools;
    return undefined;
  }

  /** (d) `ping` exists in the 2025 era only (removed in 2026-07-28). */
  async ping(): Promise<Verdict | undefined> {
    if (this.modern()) return undefined;
    const ex = await this.post("ping", {});
    if (ex.message?.error?.code === -32601) return undefined;
    const bad = this.transportVerdict(ex, "ping") ?? this.authVerdict(ex) ?? this.rpcVerdict(ex, "ping");
    this.record("ping", ex, !bad);
    return bad;
  }

  /** (e) End the session (2025 era): clients SHOULD DELETE it; 405 means the server does not allow that. Never decides the status. */
  async deleteSession(): Promise<void> {
    if (!this.sessionId || this.modern()) return;
    const ex = await exchange({
      fetch: this.fetch,
      url: this.target.toString(),
      method: "DELETE",
      headers: this.headers(true, {}),
      deadline: Math.max(this.deadline, Date.now() + 1000),
    });
    this.record("delete", ex, (ex.httpStatus >= 200 && ex.httpStatus < 300) || ex.httpStatus === 405);
  }

  modern(): boolean {
    return this.protocolVersion === MODERN_PROTOCOL_VERSION;
  }

  modernParams(): Record<string, unknown> {
    // SH-0728: the per-request envelope; the header value MUST match _meta's protocolVersion.
    return {
      _meta: {
        "io.modelcontextprotocol/protocolVersion": MODERN_PROTOCOL_VERSION,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": {},
      },
    };
  }

  headers(
    auth: boolean,
    opts: { modernMethod?: string; legacyInit?: boolean; notification?: boolean },
  ): Record<string, string> {
    const h: Record<string, string> = {
      ...this.userHeaders,
      accept: "application/json, text/event-stream",
      "user-agent": "mcpgate-probe/0.1",
    };
    h["content-type"] = "application/json";
    // Authorization MUST be sent on every request (MCP authorization); the unauthenticated step strips it.
    for (const name of Object.keys(h))
      if (name.toLowerCase() === "authorization" && (!auth || this.key)) delete h[name];
    if (auth && this.key) h.authorization = `Bearer ${this.key}`;
    if (opts.modernMethod) {
      h["mcp-protocol-version"] = MODERN_PROTOCOL_VERSION;
      h["mcp-method"] = opts.modernMethod;
    } else if (!opts.legacyInit && this.protocolVersion) {
      // 2025-06-18+: MCP-Protocol-Version on every request after initialize.
      h["mcp-protocol-version"] = this.protocolVersion;
      if (this.sessionId) h["mcp-session-id"] = this.sessionId;
    }
    return h;
  }

  post(
    method: string,
    params: Record<string, unknown>,
    opts: { auth?: boolean; modern?: boolean; legacyInit?: boolean } = {},
  ) {
    const headerOpts = opts.modern ? { modernMethod: method } : { legacyInit: opts.legacyInit ?? false };
    return exchange({
      fetch: this.fetch,
      url: this.target.toString(),
      method: "POST",
      headers: this.headers(opts.auth ?? true, headerOpts),
      body: { jsonrpc: "2.0", id: this.nextId++, method, params },
      deadline: this.deadline,
    });
  }

  record(name: ProbeStep["name"], ex: Exchange, ok: boolean): void {
    this.steps.push({ name, httpStatus: ex.httpStatus, latencyMs: ex.latencyMs, ok });
  }

  transportVerdict(ex: Exchange, what: string): Verdict | undefined {
    if (ex.failure === "timeout")
      return { status: "timeout", httpStatus: 0, error: `${what}: ${ex.detail ?? "no response in time"}` };
    if (ex.failure === "unreachable")
      return { status: "unreachable", httpStatus: 0, error: `${what}: ${ex.detail ?? "unreachable"}` };
    if (ex.httpStatus >= 500)
      return {
        status: "server_error",
        httpStatus: ex.httpStatus,
        error: `${what} answered HTTP ${ex.httpStatus}`,
      };
    if (ex.httpStatus === 429)
      return { status: "server_error", httpStatus: 429, error: `${what} was rate limited (HTTP 429)` };
    return undefined;
  }

  authVerdict(ex: Exchange): Verdict | undefined {
    if (ex.httpStatus !== 401 && ex.httpStatus !== 403) return undefined;
    const error = this.key
      ? `the server rejected the probe key (HTTP ${ex.httpStatus})`
      : `the server requires a credential and no probe key was given (HTTP ${ex.httpStatus})`;
    return { status: "auth_rejected", httpStatus: ex.httpStatus, error };
  }

  rpcVerdict(ex: Exchange, what: string): Verdict | undefined {
    if (ex.httpStatus === 404 && this.sessionId) {
      return {
        status: "protocol_error",
        httpStatus: 404,
        error: `${what}: the server does not know the session it just created`,
      };
    }
    if (ex.httpStatus < 200 || ex.httpStatus >= 300 || !ex.message?.result) {
      return { status: "protocol_error", httpStatus: ex.httpStatus, error: `${what} ${describeAnswer(ex)}` };
    }
    return undefined;
  }
}

function describeAnswer(ex: Exchange): string {
  const err: JsonRpcReply["error"] = ex.message?.error;
  if (err)
    return `answered HTTP ${ex.httpStatus} with JSON-RPC error ${err.code}: ${String(err.message).slice(0, 160)}`;
  if (ex.bodyProblem) return `answered HTTP ${ex.httpStatus}: ${ex.bodyProblem}`;
  return `answered HTTP ${ex.httpStatus}`;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** Belt and braces: a server may echo the credential in an error message; it never leaves the probe. */
function redactResult(result: ProbeResult, key: string | undefined): ProbeResult {
  if (!key || !result.error) return result;
  if (result.error.includes(key)) result.error = result.error.split(key).join("[redacted]");
  return result;
}
