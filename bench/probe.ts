/**
 * Cost of one `probeEndpoint` check against the official SDK client doing the same MCP work
 * (connect = initialize + initialized, tools/list, ping, DELETE of the session), both against the
 * same 1.x SDK server behind a bearer check on loopback, in alternating rounds within one run.
 * The probe does more on purpose: an unauthenticated request (challenge check) and a 2026
 * `server/discover` attempt before falling back to `initialize`; it also opens fresh connections
 * for every check so its latency includes connecting.
 *
 * Run: npx tsx bench/probe.ts
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { probeEndpoint } from "../src/probe/probe.js";
import { startSdkServer } from "../test/probe/helpers/servers.js";
import { summarize } from "./lib.js";

const KEY = `mcpg_Bench123_${Math.random().toString(36).slice(2)}benchsecretvalue`;
const ROUNDS = 5;
const PER_ROUND = 40;

async function sdkCheck(url: string): Promise<void> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${KEY}` } },
  });
  const client = new Client({ name: "bench", version: "1.0.0" });
  await client.connect(transport);
  await client.listTools();
  await client.ping();
  await transport.terminateSession();
  await client.close();
}

async function probeCheck(url: string): Promise<void> {
  const r = await probeEndpoint(url, { key: KEY, timeoutMs: 5000 });
  if (r.status !== "up") throw new Error(`probe: ${r.status} ${r.error}`);
}

async function time(fn: () => Promise<void>, n: number, into: number[]): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    into.push(performance.now() - t);
  }
  return (performance.now() - started) / 1000;
}

const server = await startSdkServer({ key: KEY });
try {
  for (let i = 0; i < 10; i++) {
    await sdkCheck(server.url);
    await probeCheck(server.url);
  }
  const sdk: number[] = [];
  const probe: number[] = [];
  let sdkSec = 0;
  let probeSec = 0;
  for (let r = 0; r < ROUNDS; r++) {
    sdkSec += await time(() => sdkCheck(server.url), PER_ROUND, sdk);
    probeSec += await time(() => probeCheck(server.url), PER_ROUND, probe);
  }
  const s = summarize(sdk, sdkSec);
  const p = summarize(probe, probeSec);
  const fmt = (x: number) => x.toFixed(2);
  console.log(`checks per side: ${s.n} (sequential, ${ROUNDS} alternating rounds)`);
  console.log(`SDK client   p50 ${fmt(s.p50)} ms  p99 ${fmt(s.p99)} ms  ${s.rps.toFixed(0)} checks/s`);
  console.log(`probeEndpoint p50 ${fmt(p.p50)} ms  p99 ${fmt(p.p99)} ms  ${p.rps.toFixed(0)} checks/s`);
  console.log(`ratio probe/SDK p50: ${fmt(p.p50 / s.p50)}  (the probe sends 7 requests to the SDK's 5)`);
} finally {
  await server.close();
}
