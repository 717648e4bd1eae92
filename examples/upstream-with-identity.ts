// An SDK MCP server behind mcpgate that knows who is calling: the gateway signs an identity
// assertion per request (`identity: { mode: assertion }`), this server verifies it with
// `mcpgate/upstream` and the SDK's `requireBearerAuth`, and a tool reads the caller from
// `extra.authInfo`. See docs/identity.md.
//
// Run: GATEWAY_URL=http://127.0.0.1:8080 PORT=3001 npx tsx examples/upstream-with-identity.ts
// and in the gateway's config:
//   upstreams: [ { name: notes, path: /notes/mcp, url: http://127.0.0.1:3001/mcp, identity: { mode: assertion } } ]
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import express from "express";
import { verifyGatewayAssertion } from "mcpgate/upstream";

const gateway = process.env.GATEWAY_URL ?? "http://127.0.0.1:8080";
const port = Number(process.env.PORT ?? 3001);
const audience = process.env.AUDIENCE ?? `http://127.0.0.1:${port}/mcp`;

// The gateway's JWKS is public (no credential); `issuer` is its `identity.issuer` (default: the
// publicUrl origin); `audience` is this server's URL as the gateway's config names it.
const verifier = verifyGatewayAssertion({
  jwksUrl: `${gateway}/.well-known/jwks.json`,
  issuer: process.env.GATEWAY_ISSUER ?? new URL(gateway).origin,
  audience,
});

const app = express();
app.use(express.json());
app.post("/mcp", requireBearerAuth({ verifier }), async (req, res) => {
  const server = new McpServer({ name: "notes-behind-gateway", version: "1.0.0" });
  server.registerTool("whoami", { description: "Who is calling, as the gateway says" }, async (extra) => {
    const who = extra.authInfo;
    return {
      content: [
        {
          type: "text" as const,
          text: JSON.stringify({ clientId: who?.clientId, scopes: who?.scopes, ...who?.extra }),
        },
      ],
    };
  });
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on("close", () => void transport.close());
  await server.connect(transport);
  await transport.handleRequest(req, res, req.body);
});
const listener = app.listen(port, "127.0.0.1", () => {
  const address = listener.address();
  const actual = typeof address === "object" && address ? address.port : port;
  console.log(`listening http://127.0.0.1:${actual}/mcp`);
});
