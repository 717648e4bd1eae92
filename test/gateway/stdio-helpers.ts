import { readdirSync, readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CredentialVerifier } from "../../src/authn/verifier.js";
import type { Authorizer, GateObserver } from "../../src/core/contracts.js";
import { createGate } from "../../src/gate/gate.js";
import { createGatewayServer, type Mount } from "../../src/gateway/server.js";
import {
  createStdioUpstream,
  type StdioUpstream,
  type StdioUpstreamOptions,
} from "../../src/gateway/stdio/stdio-upstream.js";
import { createLogger } from "../../src/observe/logger.js";
import { twoCallers as verifier } from "../helpers/callers.js";

export const TINY_SERVER = [process.execPath, "test/gateway/fixtures/tiny-mcp-server.mjs"];
export const DEMO_SERVER = [process.execPath, "--import", "tsx", "src/cli/demo-stdio.ts"];
export const EVERYTHING_SERVER = [
  process.execPath,
  "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
  "stdio",
];

export { KEYS } from "../helpers/callers.js";

/** Bob may neither see nor call `secret_admin`; everything else is allowed. */
export const bobCannotSeeAdmin: Authorizer = {
  authorize: (identity, m) =>
    identity.subject === "bob" && m.method === "tools/call" && m.name === "secret_admin"
      ? { allow: false, scopes: ["admin"], reason: "secret_admin needs the admin scope" }
      : { allow: true },
  filtersLists: (identity) => identity.subject === "bob",
  isVisible: (identity, _kind, name) => !(identity.subject === "bob" && name === "secret_admin"),
  onDenied: () => "tool-error",
  scopesSupported: () => [],
};

export interface TestGateway {
  url: string;
  upstream: StdioUpstream;
  logLines: string[];
  close(): Promise<void>;
}

/** The gate + gateway server + a stdio upstream, assembled from parts so tests choose each. */
export async function startStdioGateway(
  options: Partial<StdioUpstreamOptions> & {
    authorizer?: Authorizer;
    identity?: Mount["identity"];
    verifier?: CredentialVerifier;
    /** Response owner options of the mount (bounds, the answer budget). */
    owner?: Mount["owner"];
    /** The gate's observer (audit events, request summaries). */
    observer?: GateObserver;
  } = {},
): Promise<TestGateway> {
  const logLines: string[] = [];
  const logger = createLogger({
    level: "debug",
    destination: { write: (line: string) => void logLines.push(line) },
  });
  const { authorizer, identity, verifier: given, owner, observer, ...rest } = options;
  const upstream = createStdioUpstream({
    command: TINY_SERVER,
    logger,
    killGraceMs: 1_000,
    spareChildren: 0,
    ...rest,
  });
  const gate = createGate({
    verifiers: [given ?? verifier],
    publicUrl: "http://127.0.0.1/mcp",
    ...(authorizer ? { authorizer } : {}),
    ...(observer ? { observer } : {}),
  });
  const server = createGatewayServer({
    mounts: [
      {
        name: "default",
        path: "/mcp",
        gate,
        upstream,
        ...(identity ? { identity } : {}),
        ...(owner ? { owner } : {}),
      },
    ],
    logger,
    shutdownGraceMs: 300,
  });
  const address = await server.listen(0, "127.0.0.1");
  return {
    url: `http://127.0.0.1:${address.port}/mcp`,
    upstream,
    logLines,
    close: () => server.close(),
  };
}

/** An SDK 1.x client connected through the gateway with a bearer key. */
export async function connectClient(
  url: string,
  key: string,
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  const client = new Client({ name: "stdio-test", version: "1.0.0" });
  await client.connect(transport);
  return { client, transport };
}

/** Children of `ppid` per /proc, with their state letter (Z = zombie). */
export function childrenOf(ppid: number): Array<{ pid: number; state: string }> {
  const out: Array<{ pid: number; state: string }> = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // "pid (comm) S ppid …": comm may contain spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[1]) === ppid) out.push({ pid: Number(entry), state: fields[0]! });
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

export async function waitFor(check: () => boolean, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return check();
}

/** POST one JSON-RPC message with raw fetch (for status codes the SDK client hides). */
export async function rawPost(
  url: string,
  key: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${key}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    },
    body: JSON.stringify(body),
  });
}
