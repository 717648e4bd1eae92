/** Runs the demo MCP server over HTTP in its own process (so benchmarks give it its own core). */
import { startDemoHttpServer } from "../src/cli/demo-server.js";

const s = await startDemoHttpServer(0);
process.stdout.write(`${JSON.stringify({ url: s.url })}\n`);
process.on("SIGTERM", () => void s.close().then(() => process.exit(0)));
