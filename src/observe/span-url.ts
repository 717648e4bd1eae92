/**
 * What a span may say about a URL it called (`url.full`, OpenTelemetry HTTP semantic conventions,
 * which ask instrumentations to scrub what they can tell is sensitive): scheme, host and path — no
 * userinfo, no query, no fragment — and every run of a path that looks like a credential replaced
 * by `REDACTED`. Some hosted MCP servers put the caller's key in the URL path
 * (`https://mcp.example.com/k/3f9a…/mcp`); such an upstream URL must not reach a trace whole.
 */

/**
 * A run of characters read as a credential, wherever it stands in a path segment (`/k/sk_…`,
 * `/key:…`, `/t;token=…`): 16 characters or more of the alphabets keys and tokens are written in
 * (base64url, hex, with `~`, `+`, `=`, `%`) with a digit among them, or 24 or more without one.
 * Words (`notifications`), dates (`2025-06-18`) and short ids stay readable; UUIDs and keys do not.
 */
const KEY_RUN = /[A-Za-z0-9_~+=%-]{16,}/g;

function scrubRun(run: string): string {
  return run.length >= 24 || /\d/.test(run) ? "REDACTED" : run;
}

/** A path with its credential-like runs replaced (query and fragment dropped). */
function scrubPath(path: string): string {
  const bare = path.split(/[?#]/, 1)[0] ?? "";
  return bare.replace(KEY_RUN, scrubRun);
}

/**
 * `url.full`, `server.address` and `server.port` for a span; undefined when `raw` is not a URL.
 *
 * @example spanUrl("https://u:p@mcp.example.com/k/3f9a1c2e5b7d9f11/mcp?x=1")
 * // { full: "https://mcp.example.com/k/REDACTED/mcp", host: "mcp.example.com" }
 */
export function spanUrl(raw: string): { full: string; host: string; port?: number } | undefined {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return undefined;
  }
  const port = u.port ? Number(u.port) : undefined;
  return {
    full: `${u.protocol}//${u.host}${scrubPath(u.pathname)}`,
    host: u.hostname,
    ...(port ? { port } : {}),
  };
}
