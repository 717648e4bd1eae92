import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** A webhook receiver on 127.0.0.1:0 recording every delivery; `statuses` scripts its answers. */
export interface Receiver {
  url: string;
  deliveries: Array<{ headers: IncomingHttpHeaders; body: string }>;
  /** Answers to give, in order; then 200. */
  statuses: number[];
  /** When true, never answer (a hung receiver). */
  hang: boolean;
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const r: Receiver = {
    url: "",
    deliveries: [],
    statuses: [],
    hang: false,
    async waitFor(n, timeoutMs = 5_000) {
      const end = Date.now() + timeoutMs;
      while (r.deliveries.length < n) {
        if (Date.now() > end) throw new Error(`expected ${n} deliveries, got ${r.deliveries.length}`);
        await new Promise((res) => setTimeout(res, 20));
      }
    },
    close: async () => {},
  };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    r.deliveries.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
    if (r.hang) return;
    res.writeHead(r.statuses.shift() ?? 200).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  r.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return r;
}
