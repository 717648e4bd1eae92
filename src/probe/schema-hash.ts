import { createHash } from "node:crypto";

/** The part of a tool definition that callers depend on; a change to it is schema drift. */
export interface ToolShape {
  name: string;
  description?: string;
  inputSchema?: unknown;
}

/**
 * A stable SHA-256 (hex) of the tools' name, description and inputSchema, sorted by name, with object
 * keys sorted at every depth: the same tool list always hashes the same, whatever order the server
 * lists tools or keys in. Other fields (annotations, _meta, outputSchema) are left out on purpose:
 * they change without breaking callers.
 *
 * @example
 * hashToolSchemas([{ name: "echo", inputSchema: { type: "object" } }]) // "4f0c…"
 */
export function hashToolSchemas(tools: readonly ToolShape[]): string {
  const shapes = tools
    .map((t) => ({ name: t.name, description: t.description ?? null, inputSchema: t.inputSchema ?? null }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return createHash("sha256").update(stableStringify(shapes)).digest("hex");
}

/**
 * JSON with object keys sorted recursively (arrays keep their order: it is meaningful in JSON Schema).
 *
 * @example stableStringify({ b: 1, a: [2, 1] }) // '{"a":[2,1],"b":1}'
 */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map((v) => stableStringify(v)).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(",")}}`;
}
