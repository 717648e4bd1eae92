/**
 * Server-Sent Events framing (WHATWG HTML §9.2.6), incremental: events may be split across chunks,
 * lines may end in LF, CR or CRLF, comments (":") and multi-line `data` are kept.
 */
export interface SseEvent {
  /** The event exactly as received, including its terminating blank line (normalised to LF). */
  raw: string;
  /** Joined `data` lines, or undefined when the event has no data field. */
  data?: string;
  event?: string;
  id?: string;
}

/** Upper bound of one buffered event; a stream that never ends an event is cut off. */
export const MAX_SSE_EVENT_BYTES = 8 * 1024 * 1024;

export class SseParser {
  #buffer = "";
  #lines: string[] = [];
  #pendingCr = false;
  #started = false;

  /** Characters received and held for an event not complete yet. */
  get buffered(): number {
    let n = this.#buffer.length;
    for (const l of this.#lines) n += l.length;
    return n;
  }

  /** Feed a chunk; returns the events completed by it. Throws RangeError past MAX_SSE_EVENT_BYTES. */
  push(chunk: string): SseEvent[] {
    let text = chunk;
    // WHATWG HTML §9.2.6: one leading U+FEFF is dropped, as every client's decoder does. Left in, it
    // would make the first field "\uFEFFdata": an event we could not read (nor map, nor filter)
    // that the client reads as data.
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    // A CR ended the previous chunk: an LF opening the next non-empty chunk belongs to that CRLF.
    // (An empty chunk must not clear this, or the LF would be read as a blank line and end the event early.)
    if (this.#pendingCr && text.length > 0) {
      if (text.startsWith("\n")) text = text.slice(1);
      this.#pendingCr = false;
    }
    const events: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.#buffer + text.slice(start, i);
      this.#buffer = "";
      if (c === 13) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === 10) i++;
        } else this.#pendingCr = true;
      }
      start = i + 1;
      if (line === "") {
        if (this.#lines.length > 0) events.push(this.#build());
      } else this.#lines.push(line);
    }
    this.#buffer += text.slice(start);
    if (this.#buffer.length + this.#lines.reduce((n, l) => n + l.length, 0) > MAX_SSE_EVENT_BYTES) {
      throw new RangeError("SSE event too large");
    }
    return events;
  }

  /** Whatever is left at end of stream (an unterminated event is returned as-is). */
  flush(): string {
    const rest = [...this.#lines, this.#buffer].filter((l) => l !== "").join("\n");
    this.#lines = [];
    this.#buffer = "";
    return rest;
  }

  #build(): SseEvent {
    const lines = this.#lines;
    this.#lines = [];
    const ev: SseEvent = { raw: `${lines.join("\n")}\n\n` };
    const data: string[] = [];
    for (const line of lines) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") ev.event = value;
      else if (field === "id") ev.id = value;
    }
    if (data.length > 0) ev.data = data.join("\n");
    return ev;
  }
}

/**
 * Serialise an event with new data, keeping its id and event type (comments and retry are dropped
 * only from rewritten events).
 */
export function formatSseEvent(data: string, meta: { event?: string; id?: string } = {}): string {
  let out = "";
  if (meta.id !== undefined) out += `id: ${meta.id}\n`;
  if (meta.event !== undefined) out += `event: ${meta.event}\n`;
  // One data line per line of `data`; JSON text (what the gateway writes) has no line break.
  if (!/[\r\n]/.test(data)) return `${out}data: ${data}\n\n`;
  for (const line of data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}
