/**
 * What a span may say about a URL it called (`url.full`, OpenTelemetry HTTP semantic conventions,
 * which ask instrumentations to scrub what they can tell is sensitive): scheme, host and path — no
 * userinfo, no query, no fragment — and every run of a path that looks like a credential replaced
 * by `REDACTED`, and so is every label of the host that looks like one. Some hosted MCP servers put
 * the caller's key in the URL path (`https://mcp.example.com/k/3f9a…/mcp`), some in a subdomain
 * (`https://sk-live-3f9a….tenant.example.com/mcp`); such an upstream URL must not reach a trace whole.
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
 * The parts of a host label that read as words or numbers: letters (under 24), digits (under 16,
 * as in `ip-10-0-1-23`), or short mixed tokens (`ec2`, `us1`, `k8s`). A host label is letters,
 * digits and hyphens only (RFC 1123 §2.1), so a hyphen is where its words part:
 * `authentication-service-production` reads as words, `sk-live-3f9a…` does not.
 */
const READABLE_PART = /^(?:[a-z]{0,23}|\d{1,15}|[a-z0-9]{1,4})$/i;

/**
 * The path's rule applied to one DNS label: a label of 16+ characters with a digit, or 24+ without,
 * is a credential unless every hyphen-separated part of it reads as a word or a number — and it
 * reads as a name: at most two short tokens mixing letters and digits (`ec2`, `k8s`), at most one
 * long number. A key cut into short groups (`3f9a-1c2e-5b7d-…`, two 15-digit halves) does not.
 * IDNA A-labels (`xn--…`, RFC 5890 §2.3.2.1) are encoded names, not keys.
 */
function scrubLabel(label: string): string {
  if (label.length < 16 || (label.length < 24 && !/\d/.test(label))) return label;
  if (/^xn--/i.test(label)) return label;
  const parts = label.split("-");
  if (!parts.every((part) => READABLE_PART.test(part))) return "REDACTED";
  const mixed = parts.filter((p) => /\d/.test(p) && /[a-z]/i.test(p)).length;
  const longNumbers = parts.filter((p) => /^\d{6,}$/.test(p)).length;
  return mixed <= 2 && longNumbers <= 1 ? label : "REDACTED";
}

/**
 * A host name with each credential-like label replaced by `REDACTED`, for `url.full` and
 * `server.address` (`sk-live-abcdef0123456789abcdef.tenant.example.com` would carry the key into
 * every trace). IP literals are returned as they are.
 */
function scrubHost(hostname: string): string {
  if (hostname.startsWith("[") || /^[\d.]+$/.test(hostname)) return hostname;
  return hostname.split(".").map(scrubLabel).join(".");
}

/**
 * `url.full`, `server.address` and `server.port` for a span; undefined when `raw` is not a URL.
 * Credential-like runs of the path and credential-like labels of the host read `REDACTED`.
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
  const host = scrubHost(u.hostname);
  return {
    full: `${u.protocol}//${host}${u.port ? `:${u.port}` : ""}${scrubPath(u.pathname)}`,
    host,
    ...(port ? { port } : {}),
  };
}
