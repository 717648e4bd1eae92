import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from "@modelcontextprotocol/sdk/shared/auth.js";

/**
 * An MCP client's OAuth state kept in memory, as the official SDK's `OAuthClientProvider` asks for
 * it: registration (DCR, or a Client ID Metadata Document URL when `clientMetadataUrl` is given),
 * the PKCE verifier, the tokens. `redirectToAuthorization` hands the URL to `onRedirect` (the demo
 * prints it; tests drive a browser to it).
 *
 * @example const provider = new MemoryOAuthClientProvider("http://127.0.0.1:33418/callback", (u) => console.log(u.href));
 */
export class MemoryOAuthClientProvider implements OAuthClientProvider {
  #client: OAuthClientInformationMixed | undefined;
  #tokens: OAuthTokens | undefined;
  #verifier = "";
  readonly clientMetadataUrl: string | undefined;

  constructor(
    readonly redirectUrl: string,
    readonly onRedirect: (url: URL) => void | Promise<void>,
    options: { clientMetadataUrl?: string; clientName?: string; clientId?: string } = {},
  ) {
    this.clientMetadataUrl = options.clientMetadataUrl;
    // A client known in advance (pre-registered, or a Client ID Metadata Document URL): no registration.
    if (options.clientId) this.#client = { client_id: options.clientId };
    this.clientMetadata = {
      client_name: options.clientName ?? "mcpgate demo client",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }

  readonly clientMetadata: OAuthClientMetadata;
  clientInformation() {
    return this.#client;
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    this.#client = info;
  }
  tokens() {
    return this.#tokens;
  }
  saveTokens(tokens: OAuthTokens) {
    this.#tokens = tokens;
  }
  redirectToAuthorization(url: URL) {
    return this.onRedirect(url);
  }
  saveCodeVerifier(verifier: string) {
    this.#verifier = verifier;
  }
  codeVerifier() {
    return this.#verifier;
  }
}

/** A loopback listener for the authorization response (RFC 8252 §7.3); resolves with the code. */
export async function startCallbackListener(): Promise<{
  redirectUrl: string;
  code: Promise<string>;
  close(): void;
}> {
  let settle!: { ok: (code: string) => void; fail: (err: Error) => void };
  const code = new Promise<string>((ok, fail) => {
    settle = { ok, fail };
  });
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname !== "/callback") return void res.writeHead(404).end();
    const got = url.searchParams.get("code");
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(got ? "<h1>Signed in</h1><p>You can close this tab.</p>" : "<h1>Not signed in</h1>");
    if (got) settle.ok(got);
    else settle.fail(new Error(`authorization failed: ${url.searchParams.get("error") ?? "no code"}`));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    redirectUrl: `http://127.0.0.1:${port}/callback`,
    code,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/**
 * Connect the official SDK client through the gateway's OAuth flow: a bare 401, discovery,
 * registration, the browser step (`authorize`: resolve with the code), the code exchange, then a
 * connected client.
 *
 * @example const client = await connectWithOAuth(url, provider, async () => await listener.code);
 */
export async function connectWithOAuth(
  mcpUrl: string,
  provider: OAuthClientProvider,
  authorize: () => Promise<string>,
): Promise<Client> {
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  const probe = new Client({ name: "mcpgate-demo-client", version: "0.1.0" });
  try {
    await probe.connect(first);
    return probe; // already authorized (saved tokens)
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
  }
  await first.finishAuth(await authorize());
  const client = new Client({ name: "mcpgate-demo-client", version: "0.1.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  return client;
}

/** What {@link runOAuthDemoClient} reports. */
export interface OAuthDemoResult {
  /** The tool's answer. */
  text: string;
  /** Milliseconds from the first (refused) request to the tool result, and how much of it was the browser. */
  totalMs: number;
  browserMs: number;
}

/**
 * The client half of `mcpgate demo --oauth`: the official SDK client meets the gateway's 401,
 * discovers its authorization server, registers, and asks the person (through `showUrl`) to sign in;
 * once the browser comes back it calls `add` and reports how long each part took.
 *
 * @example const r = await runOAuthDemoClient(gw.url, (u) => console.log(u.href));
 */
export async function runOAuthDemoClient(
  mcpUrl: string,
  showUrl: (url: URL) => void | Promise<void>,
  options: { timeoutMs?: number } = {},
): Promise<OAuthDemoResult> {
  const listener = await startCallbackListener();
  const started = performance.now();
  // The person's part: from the moment the browser is sent off until it comes back with a code.
  let sentAt = 0;
  let browserMs = 0;
  const provider = new MemoryOAuthClientProvider(listener.redirectUrl, async (url) => {
    sentAt = performance.now();
    await showUrl(url);
  });
  try {
    const timeout = options.timeoutMs ?? 10 * 60_000;
    const client = await connectWithOAuth(mcpUrl, provider, async () => {
      const code = await Promise.race([
        listener.code,
        new Promise<never>((_, fail) =>
          setTimeout(() => fail(new Error("no sign-in within the time allowed")), timeout).unref(),
        ),
      ]);
      browserMs = performance.now() - sentAt;
      return code;
    });
    const result = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
    await client.close();
    const content = (result.content as Array<{ type: string; text?: string }>)[0];
    return { text: content?.text ?? "", totalMs: performance.now() - started, browserMs };
  } finally {
    listener.close();
  }
}
