import { type Command, Option } from "commander";
import { issueApiKey } from "../authn/key-lifecycle.js";
import { validateConfig } from "../config.js";
import { startGateway } from "../gateway/assembly/assemble.js";
import { firstFreePort } from "../gateway/free-port.js";
import { openKeyStore } from "../stores/open-key-store.js";
import { runDemoStdioServer, startDemoHttpServer } from "./demo-server.js";
import { installShutdown } from "./serve.js";

export interface DemoOptions {
  store?: string;
  port?: number;
  /** Run the gateway as its own OAuth authorization server (login with the printed key) and an SDK client through it. */
  oauth?: boolean;
}

/**
 * `mcpgate demo` (what `npm start` runs): the bundled demo MCP server on a free loopback port, the
 * gateway in front of it on 127.0.0.1:8080 (or the next free port), a fresh key printed once.
 */
export async function runDemo(options: DemoOptions = {}): Promise<void> {
  const upstream = await startDemoHttpServer(0, "127.0.0.1");
  const storeLocation = options.store ?? process.env.MCPGATE_STORE ?? "sqlite:./mcpgate.db";
  const store = await openKeyStore(storeLocation);
  const { key, record } = await issueApiKey(store, {
    name: `demo-${new Date().toISOString().slice(0, 19)}`,
    scopes: ["tools:call"],
    expiresInMs: 24 * 3_600_000,
  });
  await store.close();
  const port = await firstFreePort("127.0.0.1", options.port ?? 8080);
  const config = validateConfig(
    {
      listen: { host: "127.0.0.1", port },
      upstream: { url: upstream.url },
      auth: { apiKeys: { store: storeLocation } },
      logging: { level: process.env.MCPGATE_LOG_LEVEL ?? "warn" },
      // docs/authorization-server.md: the gateway is the authorization server; people log in with a key.
      ...(options.oauth
        ? {
            authServer: { login: { apiKey: {} } },
            policy: { default: "deny", tools: [{ match: "*", scopes: ["tools:call"] }] },
          }
        : {}),
    },
    null,
  );
  const gw = await startGateway({ config });
  const url = gw.url;
  if (options.oauth) {
    installShutdown(async () => {
      await gw.close();
      await upstream.close();
    }, gw.logger);
    await runOAuthDemo(url, key, record.id);
    return;
  }
  const out = [
    "",
    "mcpgate demo is running",
    `  gateway        ${url}   (auth required)`,
    `  demo server    ${upstream.url}   (loopback only, no auth: what mcpgate protects)`,
    `  key store      ${storeLocation}`,
    "",
    `Your API key (shown once; id ${record.id}, scopes: ${record.scopes.join(" ")}, expires in 24h):`,
    "",
    `  ${key}`,
    "",
    "Try it:",
    "",
    `  curl -sS -X POST ${url} \\`,
    `    -H 'Authorization: Bearer ${key}' \\`,
    "    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\",
    `    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'`,
    "",
    "  # MCP Inspector CLI (the Inspector itself needs Node.js 22 or later):",
    `  npx -y @modelcontextprotocol/inspector --cli ${url} --transport http \\`,
    `    --header 'Authorization: Bearer ${key}' --method tools/call --tool-name add --tool-arg a=2 --tool-arg b=3`,
    "",
    `Without the header you get a 401. Manage keys with: npx mcpgate keys list --store ${storeLocation}`,
    "Press Ctrl+C to stop.",
    "",
  ];
  process.stdout.write(out.join("\n"));
  installShutdown(async () => {
    await gw.close();
    await upstream.close();
  }, gw.logger);
}

export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("Run a demo MCP server behind the gateway and print a key to try it (what `npm start` runs)")
    .option("--store <location>", "key store (default sqlite:./mcpgate.db)")
    .option("--port <port>", "first port to try for the gateway (default 8080)")
    .option(
      "--oauth",
      "the gateway as OAuth authorization server: an SDK client signs in through your browser with the printed key",
    )
    // Hidden: serve the demo on stdin/stdout, for `mcpgate serve --stdio "mcpgate demo --stdio-server"`.
    .addOption(new Option("--stdio-server", "serve the demo MCP server over stdio").hideHelp())
    .action(async (flags: { store?: string; port?: string; stdioServer?: boolean; oauth?: boolean }) => {
      if (flags.stdioServer) {
        await runDemoStdioServer();
        return;
      }
      await runDemo({
        ...(flags.store ? { store: flags.store } : {}),
        ...(flags.port ? { port: Number(flags.port) } : {}),
        ...(flags.oauth ? { oauth: true } : {}),
      });
    });
}

/**
 * `mcpgate demo --oauth`: the whole OAuth flow on one machine. The official SDK client meets the
 * gateway's 401, finds the gateway's own authorization server, registers, and prints the sign-in
 * URL; the person opens it, types the demo key, approves; the client calls a tool. The gateway keeps
 * running for other OAuth clients (mcp-remote, desktop assistants).
 */
async function runOAuthDemo(url: string, key: string, keyId: string): Promise<void> {
  const say = (lines: string[]): void => {
    process.stdout.write(`${lines.join("\n")}\n`);
  };
  say([
    "",
    "mcpgate demo --oauth is running",
    `  gateway (resource server + authorization server)   ${url}`,
    `  authorization server metadata   ${new URL(url).origin}/.well-known/oauth-authorization-server`,
    "",
    `Sign-in key (shown once; id ${keyId}, scopes: tools:call, expires in 24h):`,
    "",
    `  ${key}`,
    "",
    "An MCP client (the official SDK) is connecting now: it got a 401, discovered the authorization",
    "server, registered itself, and asks you to sign in. Open this URL in your browser, paste the key,",
    "and approve:",
  ]);
  try {
    // Loaded only for --oauth: plain `mcpgate demo` starts without the SDK client.
    const { runOAuthDemoClient } = await import("./demo-oauth.js");
    const result = await runOAuthDemoClient(url, (authorizationUrl) =>
      say(["", `  ${authorizationUrl.href}`, ""]),
    );
    say([
      `Signed in. The client called tools/call add(2, 3) through the gateway and got: ${result.text}`,
      `  ${Math.round(result.totalMs - result.browserMs)} ms of protocol (401 → discovery → registration → token → tool call), ${Math.round(result.browserMs)} ms in the browser.`,
      "",
      "Other OAuth clients work the same way, e.g.:",
      `  npx -y mcp-remote ${url}`,
      "",
      "Press Ctrl+C to stop.",
    ]);
  } catch (err) {
    say([
      `The demo client did not finish: ${err instanceof Error ? err.message : String(err)}`,
      "Press Ctrl+C to stop.",
    ]);
  }
}
