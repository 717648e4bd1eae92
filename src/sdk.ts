import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import {
  compilePolicy,
  governedItem,
  type Policy,
  type PolicyInput,
  type PolicyKind,
} from "./authz/policy.js";
import { canonicalizeRequestNames } from "./authz/resource-uri.js";
import { JSONRPC } from "./core/challenge.js";
import { McpGateError } from "./core/errors.js";
import type { Identity } from "./core/identity.js";
import type { InspectedMessage } from "./mcp/jsonrpc.js";
import { filterListResponse, isListMethod } from "./mcp/list-filter.js";

/**
 * `mcpgate/sdk`: the gateway's policy applied inside an official SDK 1.x `McpServer`, for servers
 * that embed the middleware (`mcpgate/express`, `mcpgate/node`) instead of running the gateway.
 * The middleware sets `req.auth`; the SDK hands it to handlers as `extra.authInfo`; this wrapper
 * reads its scopes on every tools/call, resources/read, prompts/get and completion, and filters
 * tools/list, resources/list, resources/templates/list and prompts/list per caller, with the same
 * rules as the gateway (docs/policy.md). No `extra.authInfo` means no scopes (fail closed).
 */

/** The `extra` the SDK passes to request handlers, as far as this wrapper reads it. */
interface HandlerExtra {
  authInfo?: { scopes?: string[]; clientId?: string; extra?: Record<string, unknown> };
}
type Handler = (
  request: { method: string; params?: Record<string, unknown> },
  extra: HandlerExtra,
) => unknown;

const GUARDED = [
  "tools/call",
  "tools/list",
  "resources/read",
  "resources/subscribe",
  "resources/unsubscribe",
  "resources/list",
  "resources/templates/list",
  "prompts/get",
  "prompts/list",
  "completion/complete",
];

function identityOf(extra: HandlerExtra): Identity {
  const info = extra.authInfo;
  const kind = info?.extra?.kind;
  return {
    principal: typeof info?.extra?.principal === "string" ? info.extra.principal : "anonymous",
    kind: kind === "oauth2" || kind === "static_key" ? kind : "api_key",
    subject: info?.clientId ?? "",
    scopes: Array.isArray(info?.scopes) ? info.scopes.filter((s) => typeof s === "string") : [],
  };
}

function inspected(request: { method: string; params?: Record<string, unknown> }): InspectedMessage {
  const params = request.params ?? {};
  const name =
    typeof params.name === "string" ? params.name : typeof params.uri === "string" ? params.uri : "";
  return { type: "request", id: 0, method: request.method, name, raw: { ...request } };
}

/**
 * Apply a policy to an SDK `McpServer`. Call it right after `new McpServer(…)`, before registering
 * tools, resources or prompts (the SDK installs its handlers on the first registration; an earlier
 * one is refused with ERR_INVALID_OPTION rather than left unguarded). Returns the compiled policy.
 *
 * A denied tools/call answers `{ content: [{ type: "text", text: "<why>" }], isError: true }`;
 * with `onDenied: "step-up"` (or `auto` and an OAuth caller) it throws a JSON-RPC error
 * (-31001, `data: { error: "insufficient_scope", scopes }`). For a real HTTP 403 step-up, give the
 * same policy to the middleware too: `mcpAuth({ …, authorizer: policy })`.
 *
 * @example
 * const server = new McpServer({ name: "notes", version: "1.0.0" });
 * const policy = withPolicy(server, { tools: [{ match: "delete_*", scopes: ["admin"] }, { match: "*", scopes: [] }] });
 * server.registerTool("delete_note", { inputSchema: { name: z.string() } }, handler);
 */
export function withPolicy(server: McpServer, policy: Policy | PolicyInput): Policy {
  const compiled = isPolicy(policy) ? policy : compilePolicy(policy);
  const low = server.server;
  for (const method of GUARDED) {
    try {
      low.assertCanSetRequestHandler(method);
    } catch {
      throw new McpGateError(
        "ERR_INVALID_OPTION",
        `withPolicy: a ${method} handler is already installed; apply the policy before registering tools, resources and prompts`,
      );
    }
  }
  const original = low.setRequestHandler.bind(low) as (schema: unknown, handler: Handler) => void;
  const patched = (schema: unknown, handler: Handler) => original(schema, guard(compiled, handler));
  (low as unknown as { setRequestHandler: typeof patched }).setRequestHandler = patched;
  return compiled;
}

function isPolicy(p: Policy | PolicyInput): p is Policy {
  return typeof (p as Policy).evaluate === "function" && typeof (p as Policy).authorize === "function";
}

function guard(policy: Policy, handler: Handler): Handler {
  return async (request, extra) => {
    const method = request?.method;
    if (typeof method !== "string" || !GUARDED.includes(method)) return handler(request, extra);
    const identity = identityOf(extra);
    if (isListMethod(method)) {
      const result = await handler(request, extra);
      if (!policy.filtersLists(identity) || !result || typeof result !== "object") return result;
      const visible = (kind: PolicyKind, name: string) => policy.isVisible(identity, kind, name);
      // The same filter as the gateway; the era is 2025 (SDK 1.x speaks up to 2025-11-25).
      return filterListResponse({ result }, method, visible, "2025").result;
    }
    const message = inspected(request);
    // The handler resolves the URI the way the policy matches it: canonical form, in place
    // (issue 14 item 1; `raw.params` is the request's own params object).
    const canon = canonicalizeRequestNames([message]);
    if (!canon.ok) throw new McpError(ErrorCode.InvalidParams, canon.reason);
    if (governedItem(message)) {
      const d = policy.authorize(identity, message);
      if (!d.allow) {
        if (method === "tools/call" && policy.onDenied(identity) === "tool-error") {
          return { content: [{ type: "text", text: d.reason }], isError: true };
        }
        throw new McpError(JSONRPC.FORBIDDEN, d.reason, { error: "insufficient_scope", scopes: d.scopes });
      }
    }
    return handler(request, extra);
  };
}
