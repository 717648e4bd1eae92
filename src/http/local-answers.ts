import type { ServerResponse } from "node:http";
import { formatSseEvent } from "../mcp/sse.js";

/**
 * An in-process SDK server writes the response itself: merge the gate's own answers (refused
 * batch elements) into what it writes, so that the library answers a batch exactly as the gateway
 * does — the allowed elements by the server, the refused ones by the gate, in one response.
 * SSE: the local answers go out as the first events. JSON: appended to the array. 202 (only
 * notifications went on): 200 with the local answers.
 */
export function mergeLocalAnswers(res: ServerResponse, local: readonly unknown[]): void {
  if (local.length === 0) return;
  const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => ServerResponse;
  const write = res.write.bind(res) as (...args: unknown[]) => boolean;
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
  let mode: "json" | "accepted" | undefined;
  const held: Buffer[] = [];
  const hold = (chunk: unknown) => {
    if (chunk instanceof Uint8Array) held.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    else if (typeof chunk === "string") held.push(Buffer.from(chunk));
  };
  const patched = res as unknown as Record<string, (...args: unknown[]) => unknown>;
  patched.writeHead = (...args: unknown[]) => {
    const status = args[0] as number;
    const headers = (args.find((a, i) => i > 0 && a && typeof a === "object" && !Array.isArray(a)) ??
      {}) as Record<string, unknown>;
    // The body changes length: whatever length the server computed no longer holds.
    for (const k of Object.keys(headers)) if (k.toLowerCase() === "content-length") delete headers[k];
    res.removeHeader("content-length");
    const ct = String(
      Object.entries(headers).find(([k]) => k.toLowerCase() === "content-type")?.[1] ??
        res.getHeader("content-type") ??
        "",
    ).toLowerCase();
    if (status === 202) {
      mode = "accepted";
      return writeHead(200, { ...headers, "content-type": "application/json" });
    }
    if (ct.startsWith("text/event-stream")) {
      const r = writeHead(...args);
      write(local.map((m) => formatSseEvent(JSON.stringify(m))).join(""));
      return r;
    }
    if (ct.startsWith("application/json")) mode = "json";
    return writeHead(...args);
  };
  patched.write = (...args: unknown[]) => {
    if (!mode) return write(...args);
    hold(args[0]);
    return true;
  };
  patched.end = (...args: unknown[]) => {
    if (!mode) return end(...args);
    hold(args[0]);
    let answers: unknown[] = [];
    if (mode === "json") {
      try {
        const v = JSON.parse(Buffer.concat(held).toString("utf8")) as unknown;
        answers = Array.isArray(v) ? v : [v];
      } catch {
        answers = [];
      }
    }
    return end(JSON.stringify([...answers, ...local]));
  };
}
