import type { Authorizer, AuthzDecision } from "../core/contracts.js";
import { McpGateError } from "../core/errors.js";
import type { Identity } from "../core/identity.js";
import type { InspectedMessage } from "../core/message.js";
import {
  type Canonical,
  canonicalResourceUri,
  canonicalUriTemplate,
  MAX_NAME_LENGTH,
  MAX_URI_LENGTH,
} from "./resource-uri.js";

/**
 * Per-tool authorization (DESIGN.md §2 "authorize each message"; docs/policy.md).
 *
 * Rules are ordered; the first rule whose `match` glob matches the item decides. A rule lists the
 * scopes it requires, all of them (`mode: "all"`, the default) or any one (`mode: "any"`). An item
 * no rule matches gets `default` (deny unless `default: "allow"`). Tools match by name, prompts by
 * name, resources by URI (and resource templates by their URI template).
 */

/** What the policy governs. */
export type PolicyKind = "tools" | "resources" | "prompts";

/** One rule, as written in config (`policy.tools[]` …). */
export interface PolicyRuleInput {
  /** Glob: `*` any run of characters (also `/`), `?` exactly one character; everything else literal. */
  match: string;
  scopes?: readonly string[];
  mode?: "all" | "any";
}

/** Options of {@link compilePolicy}: the `policy` section of the configuration. */
export interface PolicyInput {
  default?: "allow" | "deny";
  /** `auto`: step-up (403 insufficient_scope) for OAuth identities, a tool error for keys. */
  onDenied?: "auto" | "tool-error" | "step-up";
  tools?: readonly PolicyRuleInput[];
  resources?: readonly PolicyRuleInput[];
  prompts?: readonly PolicyRuleInput[];
  /**
   * The `scope` of 401 challenges (`auth.challengeScopes`): what a client asks for at first login.
   * Default: the scopes the catch-all (`*`) rules need (least privilege to start; step-up adds more).
   */
  challengeScopes?: readonly string[];
}

/** A compiled rule. */
export interface PolicyRule {
  readonly kind: PolicyKind;
  /** Position in its list (0-based), for `policy explain` and audit. */
  readonly index: number;
  readonly match: string;
  readonly scopes: readonly string[];
  readonly mode: "all" | "any";
  readonly test: (name: string) => boolean;
}

/** How the policy decided one item for one set of granted scopes. */
export interface PolicyVerdict {
  allow: boolean;
  /** The deciding rule; undefined when the default decided. */
  rule?: PolicyRule;
  /** Required scopes the caller lacks (all-of: each missing one; any-of: all listed, none held). */
  missing: string[];
}

/** A compiled policy: the {@link Authorizer} the gate calls, plus `evaluate` for explain and the SDK wrapper. */
export interface Policy extends Authorizer {
  readonly default: "allow" | "deny";
  readonly onDeniedMode: "auto" | "tool-error" | "step-up";
  readonly rules: Readonly<Record<PolicyKind, readonly PolicyRule[]>>;
  /** Decide one item for a set of granted scopes (the one function `authorize` and `isVisible` share). */
  evaluate(kind: PolicyKind, name: string, granted: readonly string[]): PolicyVerdict;
  /** The `scope` of a 401 challenge: the least a client needs to start. */
  challengeScopes(): string[];
}

/** Longest glob accepted in a rule (config; the matcher's cost is linear in name × glob). */
const MAX_GLOB_LENGTH = 1024;

/** One `*`-free piece of a glob, as code points; `undefined` stands for `?`. */
type Piece = ReadonlyArray<string | undefined>;

/** Whether `piece` matches `name` (code points) at `at`. */
function pieceAt(name: readonly string[], at: number, piece: Piece): boolean {
  for (let j = 0; j < piece.length; j++) {
    const p = piece[j];
    if (p !== undefined && name[at + j] !== p) return false;
  }
  return true;
}

/**
 * Compile a glob into an anchored, case-sensitive test. `*` matches any run of code points
 * (including none and `/`), `?` exactly one code point; every other character is literal. No
 * Unicode normalization: a look-alike (Cyrillic "а" for Latin "a") or a different case does not
 * match.
 *
 * Matching never backtracks: the glob is cut at each `*` into pieces; the first piece must match
 * at the start, the last at the end, and each middle piece is taken at its leftmost place after
 * the previous one (leftmost is always right: a later place leaves less room for what follows).
 * The cost is at most (name length × glob length), whatever the number of `*` — a backtracking
 * regex for `a*b*c*d` is polynomial of degree 3 in the name, which one large request turned into
 * seconds of blocked event loop.
 *
 * @example compileGlob("delete_*")("delete_note") // true
 */
export function compileGlob(glob: string): (name: string) => boolean {
  if (typeof glob !== "string" || glob.length === 0) {
    throw new McpGateError("ERR_INVALID_OPTION", "policy: a rule's match must be a non-empty string");
  }
  if (glob.length > MAX_GLOB_LENGTH) {
    throw new McpGateError("ERR_INVALID_OPTION", `policy: a rule's match is longer than ${MAX_GLOB_LENGTH}`);
  }
  if (!/[*?]/.test(glob)) return (name) => name === glob;
  if (/^\*+$/.test(glob)) return () => true;
  const parts = glob.split("*");
  if (!glob.includes("?")) {
    // Literal pieces: compare UTF-16 strings directly (a literal piece cannot split a code point).
    const first = parts[0]!;
    const last = parts.length > 1 ? parts[parts.length - 1]! : "";
    const middle = parts.slice(1, -1).filter((p) => p.length > 0);
    const min = parts.reduce((n, p) => n + p.length, 0);
    return (name) => {
      if (name.length < min || !name.startsWith(first) || !name.endsWith(last)) return false;
      let pos = first.length;
      const end = name.length - last.length;
      for (const piece of middle) {
        const i = name.indexOf(piece, pos);
        if (i < 0 || i + piece.length > end) return false;
        pos = i + piece.length;
      }
      return pos <= end;
    };
  }
  // With `?`, work on code points: `?` is one code point, not half of a surrogate pair.
  const pieces: Piece[] = parts.map((p) => Array.from(p, (ch) => (ch === "?" ? undefined : ch)));
  const starred = pieces.length > 1;
  const first = pieces[0]!;
  const last = starred ? pieces[pieces.length - 1]! : [];
  const middle = pieces.slice(1, -1).filter((p) => p.length > 0);
  const min = pieces.reduce((n, p) => n + p.length, 0);
  return (text) => {
    if (text.length < min) return false;
    const name = Array.from(text);
    if (!starred) return name.length === first.length && pieceAt(name, 0, first);
    const end = name.length - last.length;
    if (end < first.length || !pieceAt(name, 0, first) || !pieceAt(name, end, last)) return false;
    let pos = first.length;
    for (const piece of middle) {
      let at = pos;
      while (at + piece.length <= end && !pieceAt(name, at, piece)) at++;
      if (at + piece.length > end) return false;
      pos = at + piece.length;
    }
    return true;
  };
}

/**
 * Whether a granted scope covers a required one. Exact match; `*` covers everything; a granted
 * scope ending in `:*` covers every scope under that prefix (`tools:*` covers `tools:call` and
 * `tools:admin:x`, not `tools`). Required scopes are never treated as patterns (spec A-0728:
 * "MUST account for scope hierarchies, where a broader scope implies narrower ones").
 *
 * @example scopeCovers("tools:*", "tools:call") // true
 */
export function scopeCovers(granted: string, required: string): boolean {
  if (granted === required || granted === "*") return true;
  return granted.endsWith(":*") && required.startsWith(granted.slice(0, -1));
}

/**
 * Required scopes of a rule the granted set lacks (empty: the rule allows).
 *
 * @example missingScopes(policy.rules.tools[0], ["tools:call"]) // ["admin"]
 */
export function missingScopes(rule: PolicyRule, granted: readonly string[]): string[] {
  const has = (req: string) => granted.some((g) => scopeCovers(g, req));
  if (rule.mode === "any") {
    return rule.scopes.length === 0 || rule.scopes.some(has) ? [] : [...rule.scopes];
  }
  return rule.scopes.filter((s) => !has(s));
}

const MAX_NAME_IN_REASON = 120;

function quoteName(name: string): string {
  // The name comes from the caller's body: keep it short and printable in the message.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  const clean = name.replace(/[\u0000-\u001f\u007f]/g, "?");
  return JSON.stringify(clean.length > MAX_NAME_IN_REASON ? `${clean.slice(0, MAX_NAME_IN_REASON)}…` : clean);
}

const NOUN: Record<PolicyKind, string> = { tools: "tool", resources: "resource", prompts: "prompt" };

/** The text a denied caller reads: names the item and the missing scopes, nothing else. */
export function denialReason(kind: PolicyKind, name: string, verdict: PolicyVerdict): string {
  const what = `${NOUN[kind]} ${quoteName(name)}`;
  if (!verdict.rule) return `Forbidden: ${what} is not allowed by the gateway policy`;
  const list = verdict.missing.join(", ");
  if (verdict.rule.mode === "any" && verdict.missing.length > 1) {
    return `Forbidden: ${what} requires one of the scopes: ${list}`;
  }
  return `Forbidden: ${what} requires the scope${verdict.missing.length > 1 ? "s" : ""}: ${list}`;
}

/**
 * Which policy list and item a message is governed by; undefined for methods that are always
 * allowed (initialize, ping, list methods, notifications, responses, …). List methods are allowed
 * because their results are filtered per caller instead.
 */
export function governedItem(m: InspectedMessage): { kind: PolicyKind; name: string } | undefined {
  if (m.type === "response" || !m.method) return undefined;
  switch (m.method) {
    case "tools/call":
      return { kind: "tools", name: m.name ?? "" };
    case "prompts/get":
      return { kind: "prompts", name: m.name ?? "" };
    case "resources/read":
    case "resources/subscribe":
    case "resources/unsubscribe":
      return { kind: "resources", name: m.name ?? "" };
    case "completion/complete": {
      // Completions reveal a prompt's or a resource template's arguments: same rule as the item.
      const params = m.raw.params as { ref?: { type?: unknown; name?: unknown; uri?: unknown } } | undefined;
      const ref = params?.ref;
      if (ref?.type === "ref/prompt")
        return { kind: "prompts", name: typeof ref.name === "string" ? ref.name : "" };
      if (ref?.type === "ref/resource")
        return { kind: "resources", name: typeof ref.uri === "string" ? ref.uri : "" };
      return undefined;
    }
    default:
      return undefined;
  }
}

/**
 * A resource rule is matched against canonical URIs (resource-uri.ts), so a glob that is not itself
 * canonical could never match what it was written for: refuse it at start and name the canonical
 * spelling. Wildcards are tried as a plain letter; a glob that starts with `*` may be any suffix.
 */
function checkResourceGlob(glob: string, index: number): void {
  if (typeof glob !== "string" || glob.startsWith("*")) return;
  const probe = glob.replace(/[*?]/g, "a");
  const canon = canonicalUriTemplate(probe);
  if (!canon.ok) {
    throw new McpGateError("ERR_INVALID_OPTION", `policy.resources[${index}].match: ${canon.reason}`);
  }
  if (canon.value !== probe) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      `policy.resources[${index}].match is not a canonical URI (resources are matched as ${JSON.stringify(canon.value)}; see docs/policy.md)`,
    );
  }
}

/** Default `challengeScopes`: what the catch-all rules need (any-of: the first listed scope). */
function catchAllScopes(rules: readonly PolicyRule[]): string[] {
  return rules
    .filter((r) => /^\*+$/.test(r.match))
    .flatMap((r) => (r.mode === "any" ? r.scopes.slice(0, 1) : r.scopes));
}

/** A read/subscribe URI is a URI; a completion reference names a template. */
function canonicalRef(message: InspectedMessage, name: string): Canonical {
  return message.method === "completion/complete" ? canonicalUriTemplate(name) : canonicalResourceUri(name);
}

function compileRules(kind: PolicyKind, input: readonly PolicyRuleInput[] | undefined): PolicyRule[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) throw new McpGateError("ERR_INVALID_OPTION", `policy.${kind} must be an array`);
  return input.map((r, index) => {
    const mode = r.mode ?? "all";
    if (mode !== "all" && mode !== "any") {
      throw new McpGateError("ERR_INVALID_OPTION", `policy.${kind}[${index}].mode must be "all" or "any"`);
    }
    const scopes = [...(r.scopes ?? [])];
    for (const s of scopes) {
      if (typeof s !== "string" || s.length === 0 || /\s/.test(s)) {
        throw new McpGateError("ERR_INVALID_OPTION", `policy.${kind}[${index}].scopes: invalid scope`);
      }
    }
    if (kind === "resources") checkResourceGlob(r.match, index);
    return Object.freeze({
      kind,
      index,
      match: r.match,
      scopes: Object.freeze(scopes),
      mode,
      test: compileGlob(r.match),
    });
  });
}

/**
 * Compile the `policy` configuration section into an {@link Authorizer}. Throws
 * `ERR_INVALID_OPTION` for a malformed rule (at start, never at the first request).
 *
 * @example
 * const policy = compilePolicy({ tools: [{ match: "delete_*", scopes: ["admin"] }, { match: "*", scopes: ["tools:call"] }] });
 * policy.evaluate("tools", "delete_note", ["tools:call"]).allow // false
 */
export function compilePolicy(input: PolicyInput = {}): Policy {
  const def = input.default ?? "deny";
  if (def !== "allow" && def !== "deny") {
    throw new McpGateError("ERR_INVALID_OPTION", 'policy.default must be "allow" or "deny"');
  }
  const onDeniedMode = input.onDenied ?? "auto";
  if (!["auto", "tool-error", "step-up"].includes(onDeniedMode)) {
    throw new McpGateError("ERR_INVALID_OPTION", 'policy.onDenied must be "auto", "tool-error" or "step-up"');
  }
  const rules = Object.freeze({
    tools: Object.freeze(compileRules("tools", input.tools)),
    resources: Object.freeze(compileRules("resources", input.resources)),
    prompts: Object.freeze(compileRules("prompts", input.prompts)),
  });
  const all = [...rules.tools, ...rules.resources, ...rules.prompts];
  const supported = Object.freeze([...new Set(all.flatMap((r) => r.scopes))]);
  if (input.challengeScopes !== undefined && !Array.isArray(input.challengeScopes)) {
    throw new McpGateError("ERR_INVALID_OPTION", "auth.challengeScopes must be an array of scopes");
  }
  const challenge = Object.freeze([...new Set(input.challengeScopes ?? catchAllScopes(all))]);
  // With no rules and default allow, every caller sees everything: lists need no rewriting.
  const filters = !(def === "allow" && all.length === 0);

  function evaluate(kind: PolicyKind, name: string, granted: readonly string[]): PolicyVerdict {
    const list = rules[kind];
    if (list === undefined || typeof name !== "string" || name.length > MAX_URI_LENGTH) {
      return { allow: false, missing: [] };
    }
    for (const rule of list) {
      if (!rule.test(name)) continue;
      const missing = missingScopes(rule, granted);
      return { allow: missing.length === 0, rule, missing };
    }
    return { allow: def === "allow", missing: [] };
  }

  function authorize(identity: Identity, message: InspectedMessage): AuthzDecision {
    const item = governedItem(message);
    if (!item) return { allow: true };
    if (item.kind !== "resources" && item.name.length > MAX_NAME_LENGTH) {
      return {
        allow: false,
        scopes: [],
        reason: `Forbidden: name longer than ${MAX_NAME_LENGTH} characters`,
      };
    }
    if (item.kind === "resources") {
      // Only the canonical form is ever matched, and only the canonical form may go upstream: the
      // gate canonicalizes before authorizing (canonicalizeRequestNames); anything else is refused.
      const canon = canonicalRef(message, item.name);
      if (!canon.ok || canon.value !== item.name) {
        const why = canon.ok
          ? `is not in canonical form (${quoteName(canon.value)})`
          : `is refused: ${canon.reason}`;
        return { allow: false, scopes: [], reason: `Forbidden: resource ${quoteName(item.name)} ${why}` };
      }
    }
    const verdict = evaluate(item.kind, item.name, identity.scopes);
    if (verdict.allow) return { allow: true };
    // Step-up names every scope the operation needs (spec A-0728: all in a single challenge); for
    // any-of rules, the first listed scope is enough. No rule: no scope can help (empty list).
    const rule = verdict.rule;
    const scopes = !rule ? [] : rule.mode === "any" ? rule.scopes.slice(0, 1) : [...rule.scopes];
    return { allow: false, scopes, reason: denialReason(item.kind, item.name, verdict) };
  }

  /** A listed resource (URI) or template is visible when its canonical form is allowed. */
  function resourceVisible(identity: Identity, name: string): boolean {
    const canon = canonicalUriTemplate(name);
    return canon.ok && evaluate("resources", canon.value, identity.scopes).allow;
  }

  return Object.freeze({
    default: def,
    onDeniedMode,
    rules,
    evaluate,
    authorize,
    filtersLists: () => filters,
    isVisible: (identity: Identity, kind: PolicyKind, name: string) =>
      kind === "resources" ? resourceVisible(identity, name) : evaluate(kind, name, identity.scopes).allow,
    onDenied: (identity: Identity) =>
      onDeniedMode === "auto" ? (identity.kind === "oauth2" ? "step-up" : "tool-error") : onDeniedMode,
    scopesSupported: () => [...supported],
    challengeScopes: () => [...challenge],
  });
}
