import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Command } from "commander";
import { compilePolicy, missingScopes, type Policy, type PolicyKind } from "../authz/policy.js";
import { canonicalUriTemplate } from "../authz/resource-uri.js";
import { type GatewayConfig, loadConfigFile } from "../config.js";
import { keyStatus } from "../stores/key-store.js";
import { openKeyStore } from "../stores/open-key-store.js";
import { DEFAULT_KEY_STORE } from "./keys.js";
import { fail } from "./util.js";

/**
 * `mcpgate policy explain` (DESIGN.md §6): which tools, resources and prompts a caller sees and
 * may call, and which rule decided each. The silent empty `tools/list` is the bug class operators
 * of peer gateways hit most; this command answers "why is my tool hidden" without reading code.
 */

const KINDS: readonly PolicyKind[] = ["tools", "resources", "prompts"];

/** One rule's outcome for the explained scopes. */
export interface RuleOutcome {
  kind: PolicyKind;
  index: number;
  match: string;
  scopes: string[];
  mode: "all" | "any";
  allowed: boolean;
  missing: string[];
}

/** One live item's outcome. `visible` and `callable` always agree (docs/policy.md). */
export interface ItemOutcome {
  kind: PolicyKind;
  name: string;
  visible: boolean;
  callable: boolean;
  /** The deciding rule, or null when the default decided. */
  rule: { index: number; match: string } | null;
  missing: string[];
}

export interface PolicyExplanation {
  /** The upstream whose policy is explained (`--upstream NAME` with `upstreams:`). */
  upstream?: string;
  caller: { scopes: string[]; key?: { id: string; name: string; status: string } };
  policy: boolean;
  default: "allow" | "deny";
  onDenied: string;
  rules: RuleOutcome[];
  items?: ItemOutcome[];
}

/**
 * Explain a policy for a set of granted scopes, optionally against live item names.
 *
 * @example explainPolicy(compilePolicy(config.policy), ["tools:call"], [{ kind: "tools", name: "echo" }])
 */
export function explainPolicy(
  policy: Policy | undefined,
  scopes: string[],
  items?: ReadonlyArray<{ kind: PolicyKind; name: string }>,
): PolicyExplanation {
  const out: PolicyExplanation = {
    caller: { scopes },
    policy: policy !== undefined,
    default: policy?.default ?? "allow",
    onDenied: policy?.onDeniedMode ?? "auto",
    rules: [],
  };
  if (policy) {
    for (const kind of KINDS) {
      for (const rule of policy.rules[kind]) {
        const missing = missingScopes(rule, scopes);
        out.rules.push({
          kind,
          index: rule.index,
          match: rule.match,
          scopes: [...rule.scopes],
          mode: rule.mode,
          allowed: missing.length === 0,
          missing,
        });
      }
    }
  }
  if (items) {
    out.items = items.map(({ kind, name }) => {
      if (!policy) return { kind, name, visible: true, callable: true, rule: null, missing: [] };
      // Resources are matched in their canonical form, as the gateway does (docs/policy.md).
      const canon = kind === "resources" ? canonicalUriTemplate(name) : { ok: true as const, value: name };
      if (!canon.ok) return { kind, name, visible: false, callable: false, rule: null, missing: [] };
      const v = policy.evaluate(kind, canon.value, scopes);
      return {
        kind,
        name,
        visible: v.allow,
        callable: v.allow,
        rule: v.rule ? { index: v.rule.index, match: v.rule.match } : null,
        missing: v.missing,
      };
    });
  }
  return out;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? "")].length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c + " ".repeat(widths[i]! - [...c].length)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** Render an explanation as human-readable text. */
export function formatExplanation(e: PolicyExplanation): string {
  const lines: string[] = [];
  if (e.upstream !== undefined) lines.push(`upstream: ${e.upstream}`);
  const who = e.caller.key
    ? `key ${e.caller.key.id} (${e.caller.key.name}, ${e.caller.key.status})`
    : "caller";
  lines.push(`${who} with scopes: ${e.caller.scopes.length ? e.caller.scopes.join(" ") : "(none)"}`);
  if (!e.policy) {
    lines.push("No policy is configured: every authenticated caller sees and may call everything.");
  } else {
    lines.push(
      `default: ${e.default} (items no rule matches)   onDenied: ${e.onDenied}${e.onDenied === "auto" ? " (step-up for OAuth, tool error for keys)" : ""}`,
    );
    lines.push("");
    const rows = [["RULE", "MATCH", "REQUIRES", "OUTCOME"]];
    for (const r of e.rules) {
      const req = r.scopes.length ? `${r.scopes.join(r.mode === "any" ? " | " : " + ")}` : "(nothing)";
      rows.push([
        `${r.kind}[${r.index}]`,
        r.match,
        req,
        r.allowed ? "allow" : `deny (missing: ${r.missing.join(r.mode === "any" ? " | " : ", ")})`,
      ]);
    }
    for (const kind of KINDS) {
      const has = e.rules.some((r) => r.kind === kind);
      rows.push([`${kind}[default]`, has ? "(no rule matched)" : "(no rules)", "-", e.default]);
    }
    lines.push(table(rows));
  }
  if (e.items) {
    lines.push("");
    if (e.items.length === 0) lines.push("The upstream listed no tools, resources or prompts.");
    else {
      const rows = [["KIND", "NAME", "VISIBLE", "CALLABLE", "DECIDED BY"]];
      for (const i of e.items) {
        const by = !e.policy
          ? "no policy"
          : i.rule
            ? `${i.kind}[${i.rule.index}] ${i.rule.match}${i.missing.length ? ` (missing: ${i.missing.join(", ")})` : ""}`
            : `default: ${e.default}`;
        rows.push([i.kind, i.name, i.visible ? "yes" : "no", i.callable ? "yes" : "no", by]);
      }
      lines.push(table(rows));
      const hidden = e.items.filter((i) => !i.visible).length;
      lines.push("", `${e.items.length - hidden} of ${e.items.length} items visible to this caller.`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/** Fetch every page of the upstream's tools, resources (and templates) and prompts with the SDK client. */
export async function fetchLiveItems(
  config: GatewayConfig,
  upstreamUrl?: string,
): Promise<Array<{ kind: PolicyKind; name: string }>> {
  const up = config.upstream;
  const url = upstreamUrl ?? up?.url;
  const client = new Client({ name: "mcpgate-policy-explain", version: "1.0.0" });
  if (url) {
    // The gateway's own upstream credential, as `serve` sends it; never a caller's.
    await client.connect(
      new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { ...(up?.headers ?? {}) } },
      }),
    );
  } else if (up?.command) {
    const [command, ...args] = up.command;
    await client.connect(
      new StdioClientTransport({ command: command!, args, env: { ...(up.env ?? {}) }, stderr: "ignore" }),
    );
  } else {
    fail("--live needs upstream.url or upstream.command in the configuration (or --upstream URL)");
  }
  const items: Array<{ kind: PolicyKind; name: string }> = [];
  try {
    const caps = client.getServerCapabilities() ?? {};
    if (caps.tools) {
      let cursor: string | undefined;
      do {
        const page = await client.listTools(cursor ? { cursor } : {});
        for (const t of page.tools) items.push({ kind: "tools", name: t.name });
        cursor = page.nextCursor;
      } while (cursor);
    }
    if (caps.resources) {
      let cursor: string | undefined;
      do {
        const page = await client.listResources(cursor ? { cursor } : {});
        for (const r of page.resources) items.push({ kind: "resources", name: r.uri });
        cursor = page.nextCursor;
      } while (cursor);
      do {
        const page = await client.listResourceTemplates(cursor ? { cursor } : {});
        for (const r of page.resourceTemplates) items.push({ kind: "resources", name: r.uriTemplate });
        cursor = page.nextCursor;
      } while (cursor);
    }
    if (caps.prompts) {
      let cursor: string | undefined;
      do {
        const page = await client.listPrompts(cursor ? { cursor } : {});
        for (const p of page.prompts) items.push({ kind: "prompts", name: p.name });
        cursor = page.nextCursor;
      } while (cursor);
    }
  } finally {
    await client.close().catch(() => {});
  }
  return items;
}

interface ExplainFlags {
  config?: string;
  key?: string;
  scopes?: string;
  store?: string;
  live?: boolean;
  upstream?: string;
  json?: boolean;
}

async function scopesOfKey(id: string, location: string): Promise<PolicyExplanation["caller"]> {
  // Accept the id or the display prefix; never ask for (or print) a full key.
  const keyId = id.startsWith("mcpg_") ? id.slice(5).split("_")[0]! : id;
  const store = await openKeyStore(location);
  try {
    const record = await store.get(keyId);
    if (!record) fail(`no key with id ${keyId} in ${location.replace(/\/\/[^@/]*@/, "//…@")}`);
    return {
      scopes: [...record.scopes],
      key: { id: record.id, name: record.name, status: keyStatus(record, Date.now()) },
    };
  } finally {
    await store.close();
  }
}

/**
 * Register `policy explain` on a commander program.
 *
 * @example registerPolicyCommand(new Command("mcpgate"));
 */
export function registerPolicyCommand(program: Command): Command {
  const policy = program.command("policy").description("inspect the per-tool authorization policy");
  policy
    .command("explain")
    .description("show what a caller sees and may call, and which rule decided each item")
    .option("--config <file>", "configuration file with the policy (and upstream, key store)")
    .option("--key <id>", "explain for a stored key (its id or mcpg_<id> prefix)")
    .option("--scopes <a,b>", "explain for these granted scopes")
    .option(
      "--store <location>",
      "key store for --key (default: $MCPGATE_STORE, config, sqlite:./mcpgate.db)",
    )
    .option("--live", "list the upstream's tools, resources and prompts and explain each")
    .option(
      "--upstream <name|url>",
      "with upstreams: the upstream (by name) whose policy to explain and list; or a URL to list with --live",
    )
    .option("--json", "print JSON")
    .exitOverride((err) => {
      process.exit(err.exitCode === 0 ? 0 : 2);
    })
    .action(async (flags: ExplainFlags) => {
      if ((flags.key === undefined) === (flags.scopes === undefined))
        fail("give exactly one of --key ID or --scopes a,b");
      if (!flags.config) fail("--config FILE is required (the policy lives there)");
      const loaded = loadConfigFile(flags.config);
      // docs/upstreams.md: each upstream has its own policy (else the top-level one).
      const byName = flags.upstream !== undefined && !flags.upstream.includes("://");
      const selected = byName ? loaded.upstreams?.find((u) => u.name === flags.upstream) : undefined;
      if (byName && !selected) fail(`no upstream named "${flags.upstream}" in ${flags.config}`);
      if (loaded.upstreams && !selected)
        fail(`${flags.config} has several upstreams: name one with --upstream NAME`);
      const config: GatewayConfig = selected ? { ...loaded, upstream: selected } : loaded;
      const policySource = selected?.policy ?? config.policy;
      const compiled = policySource ? compilePolicy(policySource) : undefined;
      const caller =
        flags.key !== undefined
          ? await scopesOfKey(
              flags.key,
              flags.store || process.env.MCPGATE_STORE || config.auth.apiKeys?.store || DEFAULT_KEY_STORE,
            )
          : {
              scopes: flags
                .scopes!.split(/[,\s]+/)
                .map((s) => s.trim())
                .filter(Boolean),
            };
      let items: Array<{ kind: PolicyKind; name: string }> | undefined;
      if (flags.live) {
        try {
          items = await fetchLiveItems(config, byName ? undefined : flags.upstream);
        } catch (err) {
          process.stderr.write(`mcpgate: could not list the upstream: ${(err as Error).message}\n`);
          process.exit(1);
        }
      }
      const explanation = explainPolicy(compiled, caller.scopes, items);
      explanation.caller = caller;
      if (selected) explanation.upstream = selected.name;
      process.stdout.write(
        flags.json ? `${JSON.stringify(explanation, null, 2)}\n` : formatExplanation(explanation),
      );
    });
  return policy;
}
