import type { ServerResponse } from "node:http";
import type { Denial } from "../core/outcome.js";
import { formatSseEvent } from "../mcp/sse.js";

/**
 * The two ways a stdio child's messages answer an HTTP request: an SSE stream (event by event,
 * with backpressure) or one JSON body (collected, bounded, written at the end).
 */

/** One HTTP response carrying messages from a stdio child (SSE or one JSON body). */
export interface Channel {
  readonly sse: boolean;
  readonly open: boolean;
  /** Send one JSON-RPC message text; false when the client is not keeping up (wait for `drained`). */
  send(text: string): boolean;
  /** Resolves when the client has read what was sent (or the stream ended). */
  drained(): Promise<void>;
  close(): void;
}

/** What a channel needs of the response owner. */
export interface ChannelHost {
  drained(): Promise<void>;
  refuse(denial: Denial): void;
  readonly maxResponseBytes: number;
  /** The answer budget (see `ResponseOwnerOptions.answerBudget`): hold, and the whole answer written. */
  hold(n: number): "ok" | "caller" | "full";
  written(): void;
}

/** The head of every SSE response the gateway writes. */
export const SSE_HEAD = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
} as const;

/** SSE framing as the SDK's server writes it (`event: message` + one data line per message). */
export class SseChannel implements Channel {
  readonly sse = true;
  readonly #owner: ChannelHost;
  readonly #res: ServerResponse;
  constructor(owner: ChannelHost, res: ServerResponse) {
    this.#owner = owner;
    this.#res = res;
  }
  get open(): boolean {
    return !this.#res.writableEnded && !this.#res.destroyed;
  }
  send(text: string): boolean {
    if (this.#res.writableEnded || this.#res.destroyed) return true;
    // Not counted against the answer budget: while a stream is not read, the child's output is not
    // read (ChildRelay), so what waits here is one message at most.
    return this.#res.write(formatSseEvent(text, MESSAGE_EVENT));
  }
  drained(): Promise<void> {
    return this.#owner.drained();
  }
  close(): void {
    if (!this.#res.writableEnded) this.#res.end();
  }
}

/** Every event the gateway writes is a `message` (what the SDK's transports write). */
export const MESSAGE_EVENT = { event: "message" } as const;

/** A JSON answer: messages are collected and written as one object (or an array) at the end. */
export class JsonChannel implements Channel {
  readonly sse = false;
  readonly #owner: ChannelHost;
  readonly #res: ServerResponse;
  readonly #headers: Record<string, string>;
  #texts: string[] = [];
  #bytes = 0;
  #done = false;
  constructor(owner: ChannelHost, res: ServerResponse, headers: Record<string, string>) {
    this.#owner = owner;
    this.#res = res;
    this.#headers = headers;
  }
  get open(): boolean {
    return !this.#done && !this.#res.destroyed;
  }
  send(text: string): boolean {
    if (this.#done) return true;
    this.#bytes += text.length;
    if (this.#bytes > this.#owner.maxResponseBytes) {
      // One JSON body is bounded like an HTTP upstream's: past it, the answer is refused.
      this.#done = true;
      this.#owner.refuse({ kind: "upstream_malformed" });
      return true;
    }
    const held = this.#owner.hold(text.length);
    if (held !== "ok") {
      // The call has run: past the share its answer is dropped (-31012; a caller with no room for
      // one more answer was refused before forwarding, with 429).
      this.#done = true;
      this.#owner.refuse(
        held === "caller"
          ? { kind: "client_too_slow" }
          : { kind: "capacity", message: "too many unread answers", ran: true },
      );
      return true;
    }
    this.#texts.push(text);
    return true;
  }
  drained(): Promise<void> {
    return Promise.resolve();
  }
  close(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#res.destroyed || this.#res.headersSent) return;
    const body = this.#texts.length === 1 ? this.#texts[0]! : `[${this.#texts.join(",")}]`;
    this.#res.writeHead(200, { "content-type": "application/json", ...this.#headers }).end(body);
    this.#owner.written();
  }
}
