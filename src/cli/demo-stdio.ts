#!/usr/bin/env node
import { runDemoStdioServer } from "./demo-server.js";

/**
 * The bundled demo MCP server on stdin/stdout, for `mcpgate serve --stdio`:
 *
 * @example
 * // mcpgate serve --stdio "node dist/cli/demo-stdio.js"   (or: "mcpgate demo --stdio-server")
 */
await runDemoStdioServer();
