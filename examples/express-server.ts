// An SDK McpServer protected by mcpgate in an Express app. Run: MCP_API_KEY=... npx tsx examples/express-server.ts
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import express from "express";
import { createStaticKeyVerifier } from "mcpgate";
import { mcpAuth } from "mcpgate/express";

const app = express();
app.use(
  "/mcp",
  mcpAuth({
    verifiers: [createStaticKeyVerifier({ key: process.env.MCP_API_KEY! })],
    publicUrl: "http://127.0.0.1:3000/mcp",
  }),
);
app.post("/mcp", async (req, res) => {
  const server = new McpServer({ name: "example", version: "1.0.0" });
  server.registerTool("whoami", { description: "Who is calling" }, async (extra) => ({
    content: [{ type: "text" as const, text: `hello ${extra.authInfo?.extra?.displayPrefix}` }],
  }));
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on("close", () => void transport.close());
  await server.connect(transport);
  await transport.handleRequest(req, res, req.body);
});
app.listen(3000, "127.0.0.1");
