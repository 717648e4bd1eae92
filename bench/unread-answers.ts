/**
 * Gateway memory when one caller asks for many large answers and never reads them (the answer
 * budget, `limits.answerBufferPerCaller`): a real `mcpgate serve` (compiled) in front of a minimal
 * upstream whose tools/call answers SIZE MiB of JSON; N raw sockets each send one call and never
 * read. Prints the gateway's peak RSS over 10 s and its RSS once the sockets are gone, for this tree
 * and, in the same run, the gateway of `--before REV` (default 03cd4b6, the tree before the answer
 * budget; `none` skips it), and the ratio of their peak growths. Loopback only, bounded (~30 s).
 *   npx tsx bench/unread-answers.ts [--size 4] [--count 90] [--before REV|none]
 */
import { readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { parseArgs } from "node:util";
import { findFreePort } from "../src/gateway/free-port.js";
import { buildTree, extractTree, startGatewayProcess } from "./lib.js";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "4" },
    count: { type: "string", default: "90" },
    before: { type: "string", default: "03cd4b6" },
  },
});
const SIZE = Number(values.size) * 1024 * 1024;
const N = Number(values.count);
const KEY = "bench-unread-key-0123456789abcdef";

// The upstream: initialize mints a session; tools/call answers SIZE bytes of JSON at once.
const text = JSON.stringify("x".repeat(SIZE - 100));
const up = createServer((req, res) => {
  let body = "";
  req.on("data", (c) => {
    body += c;
  });
  req.on("end", () => {
    const m = body ? JSON.parse(body) : {};
    if (m.method === "initialize") {
      const result = {
        protocolVersion: "2025-06-18",
        capabilities: {},
        serverInfo: { name: "u", version: "1" },
      };
      res
        .writeHead(200, { "content-type": "application/json", "mcp-session-id": "bench-session" })
        .end(JSON.stringify({ jsonrpc: "2.0", id: m.id, result }));
      return;
    }
    if (m.id === undefined) return void res.writeHead(202).end();
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(
        `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":{"content":[{"type":"text","text":${text}}]}}`,
      );
  });
});
await new Promise<void>((r) => up.listen(0, "127.0.0.1", r));
const upstreamUrl = `http://127.0.0.1:${(up.address() as AddressInfo).port}/mcp`;

/** One gateway (this tree, or `root`'s) under the attack: its RSS before, at peak, and after. */
async function measure(root?: string): Promise<{ before: number; peak: number; after: number }> {
  const port = await findFreePort("127.0.0.1");
  const gw = await startGatewayProcess(upstreamUrl, {
    key: KEY,
    port,
    logLevel: "warn",
    ...(root ? { root } : {}),
  });
  const rssMiB = () =>
    Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gw.proc.pid}/status`, "utf8"))![1]) / 1024;
  const headers = {
    authorization: `Bearer ${KEY}`,
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
  };
  const init = await fetch(gw.url, {
    method: "POST",
    headers,
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "bench", version: "1" },
      },
    }),
  });
  await init.text();
  const sid = init.headers.get("mcp-session-id")!;
  const before = rssMiB();
  const u = new URL(gw.url);
  const sockets: Socket[] = [];
  for (let i = 0; i < N; i++) {
    const body = JSON.stringify({
      jsonrpc: "2.0",
      id: i + 10,
      method: "tools/call",
      params: { name: "big", arguments: {} },
    });
    const s = connect(Number(u.port), "127.0.0.1");
    const head = Object.entries({ ...headers, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    s.write(
      `POST ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\n${head}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    s.pause(); // never read
    s.on("error", () => {});
    sockets.push(s);
  }
  let peak = 0;
  for (let t = 0; t < 20; t++) {
    await new Promise((r) => setTimeout(r, 500));
    peak = Math.max(peak, rssMiB());
  }
  for (const s of sockets) s.destroy();
  await new Promise((r) => setTimeout(r, 1000));
  const after = rssMiB();
  gw.proc.kill("SIGTERM");
  return { before, peak, after };
}

buildTree();
const beforeRoot = values.before === "none" ? undefined : extractTree(values.before!);
const show = (who: string, m: { before: number; peak: number; after: number }) =>
  console.log(
    `${who}: ${N} unread answers of ${values.size} MiB from one caller — RSS ${m.before.toFixed(0)} MiB before, ` +
      `peak ${m.peak.toFixed(0)} MiB, ${m.after.toFixed(0)} MiB once the clients left`,
  );
const now = await measure();
show("gateway", now);
if (beforeRoot) {
  const then = await measure(beforeRoot);
  show(`gateway at ${values.before}`, then);
  console.log(
    `peak growth over the idle RSS, this tree ÷ ${values.before}: ${((now.peak - now.before) / (then.peak - then.before)).toFixed(2)}`,
  );
  rmSync(beforeRoot, { recursive: true, force: true });
}
up.close();
