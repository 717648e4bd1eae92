import { type InspectedMessage, MAX_NAME_LENGTH, MAX_URI_LENGTH } from "../core/message.js";

export { MAX_NAME_LENGTH, MAX_URI_LENGTH };

/**
 * Canonical resource URIs (docs/policy.md "Resource URIs").
 *
 * Upstreams built on the MCP SDK resolve `params.uri` with the WHATWG URL parser (`new URL(uri)`)
 * before they look a resource up, so the policy must match the string the upstream will use, not
 * the one the caller typed: `FILE:///srv/x`, `file://localhost/srv/x`, ` file:///srv/x`,
 * `file:///srv/a/../x`, `file:///srv/%2e/x` and `file:\\\srv\x` are all `file:///srv/x` to it.
 * The gate matches on the canonical form and forwards exactly that form, so what was authorized is
 * what the upstream reads, whichever way the upstream itself resolves URIs.
 */

/** A canonical form, or why there is none. */
export type Canonical = { ok: true; value: string } | { ok: false; reason: string };

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * RFC 3986 §6.2.2.2: percent-encoded unreserved characters are decoded and the hex digits of the
 * remaining escapes upper-cased, so `%73ecret` and `secret` are one name (an upstream that decodes
 * a template variable would otherwise read `secret` under a rule written for `%73ecret`).
 */
function normalizeEscapes(href: string): string {
  return href.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => {
    const ch = String.fromCharCode(Number.parseInt(hex, 16));
    return UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
  });
}

/**
 * The canonical form of a resource URI: the WHATWG URL serialization (scheme and special-scheme
 * host lower-cased, `file://localhost/` = `file:///`, dot segments (also `%2e`) removed, `\` = `/`
 * in special schemes, surrounding blanks and embedded tabs/newlines dropped), then RFC 3986
 * escape normalization. Refused: what does not parse as an absolute URL, what is longer than
 * {@link MAX_URI_LENGTH}, and an encoded `/` or `\` before the query (a path separator an upstream
 * may decode after the policy has matched).
 *
 * @example canonicalResourceUri("FILE://localhost/srv/shared/%2e%2e/secret") // { ok: true, value: "file:///srv/secret" }
 */
export function canonicalResourceUri(uri: string): Canonical {
  if (typeof uri !== "string" || uri.length === 0) return { ok: false, reason: "resource URI is empty" };
  if (uri.length > MAX_URI_LENGTH)
    return { ok: false, reason: `resource URI longer than ${MAX_URI_LENGTH} characters` };
  let first: string;
  try {
    first = normalizeEscapes(new URL(uri).href);
  } catch {
    return { ok: false, reason: "resource URI is not an absolute URI" };
  }
  let value: string;
  try {
    // Decoding may expose a new dot segment or host spelling: parse again, and require a fixed point.
    value = normalizeEscapes(new URL(first).href);
  } catch {
    return { ok: false, reason: "resource URI is not an absolute URI" };
  }
  if (value !== first) return { ok: false, reason: "resource URI has no stable canonical form" };
  const beforeQuery = value.split(/[?#]/, 1)[0]!;
  if (/%(2F|5C)/.test(beforeQuery)) {
    return { ok: false, reason: "resource URI contains an encoded path separator (%2F or %5C)" };
  }
  return { ok: true, value };
}

/** Stand-in for one `{…}` expression while the rest of a template is canonicalized. */
const PLACEHOLDER = (i: number) => `mcpgatetemplatexpr${i}z`;

/**
 * The canonical form of an RFC 6570 URI template (`resources/templates/list`, completion
 * `ref/resource`): every `{…}` expression is kept as written, the literal parts are canonicalized
 * as {@link canonicalResourceUri} does. A string without expressions is a plain URI. Refused: an
 * unbalanced brace, or literal parts that do not survive canonicalization around the expressions
 * (e.g. `/{a}/../x`, which would move an expression).
 *
 * @example canonicalUriTemplate("FILE:///srv/{path}") // { ok: true, value: "file:///srv/{path}" }
 */
export function canonicalUriTemplate(template: string): Canonical {
  if (typeof template !== "string" || template.length === 0)
    return { ok: false, reason: "resource URI is empty" };
  if (template.length > MAX_URI_LENGTH)
    return { ok: false, reason: `resource URI longer than ${MAX_URI_LENGTH} characters` };
  const expressions: string[] = [];
  const withPlaceholders = template.replace(/\{[^{}]*\}/g, (expr) => {
    expressions.push(expr);
    return PLACEHOLDER(expressions.length - 1);
  });
  if (/[{}]/.test(withPlaceholders) || template.includes(PLACEHOLDER(0).slice(0, -2))) {
    return { ok: false, reason: "resource URI template has unbalanced braces" };
  }
  if (expressions.length === 0) return canonicalResourceUri(template);
  const canon = canonicalResourceUri(withPlaceholders);
  if (!canon.ok) return canon;
  let value = canon.value;
  let at = 0;
  for (let i = 0; i < expressions.length; i++) {
    const ph = PLACEHOLDER(i);
    const pos = value.indexOf(ph, at);
    if (pos < 0 || value.indexOf(ph, pos + ph.length) >= 0) {
      return { ok: false, reason: "resource URI template has no stable canonical form" };
    }
    value = value.slice(0, pos) + expressions[i] + value.slice(pos + ph.length);
    at = pos + expressions[i]!.length;
  }
  return { ok: true, value };
}

/** Result of {@link canonicalizeRequestNames}. */
export type CanonicalizeResult = { ok: true; changed: boolean } | { ok: false; id: unknown; reason: string };

function notCanonical(id: unknown, canonical: string): CanonicalizeResult {
  const shown = canonical.length > 200 ? `${canonical.slice(0, 200)}…` : canonical;
  return { ok: false, id, reason: `resource URI is not in canonical form; send ${JSON.stringify(shown)}` };
}

function tooLong(name: unknown): boolean {
  return typeof name === "string" && name.length > MAX_NAME_LENGTH;
}

/**
 * Put every resource URI a request names into its canonical form, in place (`params.uri` of
 * `resources/read|subscribe|unsubscribe`, `params.ref.uri` of a `completion/complete` on a
 * `ref/resource`; `InspectedMessage.name` follows), and check the length of every name. Run after
 * the request-metadata headers were compared with the body and before authorization; when
 * `changed`, forward the re-serialized body: the upstream then receives exactly the form the policy
 * matched. `rewrite: false` (2026-07-28, where `Mcp-Name` repeats the URI and must match the body)
 * refuses a non-canonical URI instead, naming the canonical form. A refusal is a 400.
 *
 * @example canonicalizeRequestNames(admission.messages) // { ok: true, changed: false }
 */
export function canonicalizeRequestNames(
  messages: readonly InspectedMessage[],
  options: { rewrite?: boolean } = {},
): CanonicalizeResult {
  const rewrite = options.rewrite ?? true;
  let changed = false;
  for (const m of messages) {
    if (m.type === "response" || !m.method) continue;
    const params = m.raw.params as Record<string, unknown> | undefined;
    if (m.method === "tools/call" || m.method === "prompts/get") {
      if (tooLong(m.name))
        return { ok: false, id: m.id, reason: `name longer than ${MAX_NAME_LENGTH} characters` };
    } else if (
      m.method === "resources/read" ||
      m.method === "resources/subscribe" ||
      m.method === "resources/unsubscribe"
    ) {
      const c = canonicalResourceUri(m.name ?? "");
      if (!c.ok) return { ok: false, id: m.id, reason: c.reason };
      if (c.value !== m.name && !rewrite) return notCanonical(m.id, c.value);
      if (c.value !== m.name) {
        params!.uri = c.value;
        m.name = c.value;
        changed = true;
      }
    } else if (m.method === "completion/complete") {
      const ref = params?.ref as Record<string, unknown> | undefined;
      if (ref?.type === "ref/prompt" && tooLong(ref.name)) {
        return { ok: false, id: m.id, reason: `name longer than ${MAX_NAME_LENGTH} characters` };
      }
      if (ref?.type === "ref/resource" && typeof ref.uri === "string") {
        const c = canonicalUriTemplate(ref.uri);
        if (!c.ok) return { ok: false, id: m.id, reason: c.reason };
        if (c.value !== ref.uri && !rewrite) return notCanonical(m.id, c.value);
        if (c.value !== ref.uri) {
          ref.uri = c.value;
          changed = true;
        }
      }
    }
  }
  return { ok: true, changed };
}
