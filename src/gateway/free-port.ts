import { createServer } from "node:net";

/** Ask the OS for a free port on `host` (used when port 0 is asked for and the public URL needs the real port). */
export function findFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The first port from `start` upward that can be bound on `host` (the demo's "8080 or the next free"). */
export async function firstFreePort(host: string, start: number, tries = 50): Promise<number> {
  for (let p = start; p < start + tries; p++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(false));
      s.listen(p, host, () => s.close(() => resolve(true)));
    });
    if (ok) return p;
  }
  return findFreePort(host);
}
