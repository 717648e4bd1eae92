import type { ServerResponse } from "node:http";

/**
 * The authorization server's pages: plain server-rendered HTML, no JavaScript, readable on a phone
 * (one column, system font, large tap targets). Every interpolated value goes through `escapeHtml`.
 */

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:1rem;background:#f6f7f9;color:#111}
main{max-width:28rem;margin:2rem auto;background:#fff;border:1px solid #ddd;border-radius:8px;padding:1.25rem}
h1{font-size:1.25rem;margin:0 0 1rem}dl{margin:0 0 1rem}dt{font-weight:600;margin-top:.5rem}dd{margin:0;word-break:break-all}
label{display:block;font-weight:600;margin:.5rem 0 .25rem}input[type=password]{width:100%;box-sizing:border-box;font-size:1rem;padding:.6rem;border:1px solid #999;border-radius:6px}
.row{display:flex;gap:.75rem;margin-top:1rem}button{flex:1;font-size:1rem;padding:.75rem;border-radius:6px;border:1px solid #888;background:#fff;cursor:pointer}
button.primary{background:#1a56db;color:#fff;border-color:#1a56db}.warn{background:#fff4e5;border:1px solid #f0b35a;border-radius:6px;padding:.5rem .75rem}
.error{background:#fde8e8;border:1px solid #e99;border-radius:6px;padding:.5rem .75rem}code{font-size:.9em}`;

/**
 * Escape text for an HTML element or a double-quoted attribute.
 *
 * @example escapeHtml('<a href="x">') // "&lt;a href=&quot;x&quot;&gt;"
 */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Send a page with headers that forbid framing (clickjacking of the consent button, MCP security
 * best practices "Confused Deputy") and caching, and allow no script at all.
 */
export function sendPage(res: ServerResponse, status: number, title: string, body: string): void {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(title)}</title>
<style>${STYLE}</style></head><body><main>${body}</main></body></html>`;
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy":
      "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
  });
  res.end(html);
}

/** What the consent page shows (MCP security best practices: client, redirect host, scopes, resource). */
export interface ConsentView {
  action: string;
  csrf: string;
  clientName: string;
  clientId: string;
  redirectHost: string;
  /** True when every redirect URI is on loopback: a local app (spec: warn about localhost redirects). */
  loopbackRedirect: boolean;
  scopes: string[];
  resources: string[];
  who: string;
}

/** The consent page: approve or deny, one form, CSRF token in a hidden field. */
export function consentPage(v: ConsentView): string {
  const scopes = v.scopes.length ? v.scopes.map((s) => `<code>${escapeHtml(s)}</code>`).join(" ") : "(none)";
  const resources = v.resources.map((r) => `<code>${escapeHtml(r)}</code>`).join("<br>");
  const warn = v.loopbackRedirect
    ? `<p class="warn">This application runs on your own computer (it receives the answer at <code>${escapeHtml(v.redirectHost)}</code>). Approve only if you just started it.</p>`
    : "";
  return `<h1>Allow access?</h1>
<p><strong>${escapeHtml(v.clientName)}</strong> asks to use this MCP server as <strong>${escapeHtml(v.who)}</strong>.</p>
<dl><dt>Application</dt><dd>${escapeHtml(v.clientName)}<br><small>${escapeHtml(v.clientId)}</small></dd>
<dt>Sends you back to</dt><dd><code>${escapeHtml(v.redirectHost)}</code></dd>
<dt>Permissions</dt><dd>${scopes}</dd><dt>Server</dt><dd>${resources}</dd></dl>${warn}
<form method="post" action="${escapeHtml(v.action)}"><input type="hidden" name="csrf" value="${escapeHtml(v.csrf)}">
<div class="row"><button type="submit" name="decision" value="deny">Deny</button>
<button class="primary" type="submit" name="decision" value="approve">Allow</button></div></form>`;
}

/** The API-key login page (login.apiKey). */
export function apiKeyLoginPage(action: string, csrf: string, error?: string): string {
  const err = error ? `<p class="error">${escapeHtml(error)}</p>` : "";
  return `<h1>Sign in with an API key</h1>${err}
<form method="post" action="${escapeHtml(action)}" autocomplete="off"><input type="hidden" name="csrf" value="${escapeHtml(csrf)}">
<label for="key">mcpgate API key</label><input id="key" name="key" type="password" required maxlength="512" autofocus>
<div class="row"><button class="primary" type="submit">Sign in</button></div></form>`;
}

/** An error page with no detail beyond a fixed message. */
export function errorPage(message: string): string {
  return `<h1>Sign-in failed</h1><p class="error">${escapeHtml(message)}</p>`;
}
