/**
 * Runs the demo MCP server over HTTP in its own process (so benchmarks give it its own core).
 * `--stateless`: one SDK transport per request, no sessions (what a serverless MCP server does).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { createDemoMcpServer, startDemoHttpServer } from "../src/cli/demo-server.js";

if (process.argv.includes("--stateless")) {
  const server = createServer(async (req, res) => {
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on("close", () => void transport.close());
    await createDemoMcpServer().connect(transport);
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  process.stdout.write(`${JSON.stringify({ url })}\n`);
  process.on("SIGTERM", () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
} else {
  const s = await startDemoHttpServer(0);
  process.stdout.write(`${JSON.stringify({ url: s.url })}\n`);
  process.on("SIGTERM", () => void s.close().then(() => process.exit(0)));
}
