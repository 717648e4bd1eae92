import type { IncomingMessage, ServerResponse } from "node:http";
import type { HttpResponseSpec } from "../core/challenge.js";

export type BodyResult =
  | { ok: true; text: string }
  | { ok: false; tooLarge: true }
  | { ok: false; tooLarge: false };

/** After an early answer, how much of a body still in flight is read (and discarded), and for how long. */
const DRAIN_MAX_BYTES = 64 * 1024 * 1024;
const DRAIN_IDLE_MS = 2_000;
const DRAIN_MAX_MS = 10_000;

/**
 * Read a request body up to `limit` bytes. Stops keeping bytes (and reports tooLarge) as soon as
 * the limit is passed, so a hostile client cannot make us buffer more than `limit`; what follows
 * is left to {@link answerBeforeBody}.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (r: BodyResult) => {
      if (done) return;
      done = true;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        finish({ ok: false, tooLarge: true });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish({ ok: true, text: Buffer.concat(chunks).toString("utf8") });
    const onError = () => finish({ ok: false, tooLarge: false });
    const onClose = () => finish({ ok: false, tooLarge: false });
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

/**
 * Answer a request whose body was not (or not wholly) read: a 401 before the body, a 413. Closing
 * the socket while the client is still sending makes its TCP stack reset the connection, and the
 * client (Node's fetch/undici, curl) sees EPIPE/ECONNRESET instead of our answer. So the answer is
 * written whole (with Content-Length), the rest of the body is read and discarded for a bounded
 * number of bytes and time, and only then is the connection closed (RFC 9112 §9.6).
 *
 * @example answerBeforeBody(req, res, gate.render({ kind: "body_too_large", limitBytes }));
 */
export function answerBeforeBody(req: IncomingMessage, res: ServerResponse, spec: HttpResponseSpec): void {
  if (res.headersSent) return;
  const bodyExpected = req.method === "POST" && !req.complete;
  if (!bodyExpected) {
    res.writeHead(spec.status, spec.headers).end(spec.body);
    return;
  }
  res.writeHead(spec.status, {
    ...spec.headers,
    "content-length": String(Buffer.byteLength(spec.body)),
    connection: "close",
  });
  res.write(spec.body);
  let seen = 0;
  let idle: NodeJS.Timeout | undefined;
  const total = setTimeout(() => stop(true), DRAIN_MAX_MS);
  const stop = (cut: boolean) => {
    clearTimeout(idle);
    clearTimeout(total);
    req.off("data", onData);
    req.off("end", onEnd);
    req.off("close", onEnd);
    res.end();
    // Past the bounds the client is not ours to wait for: close now, whatever it is still sending.
    if (cut) res.once("finish", () => req.socket.destroy());
  };
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => stop(true), DRAIN_IDLE_MS);
  };
  const onData = (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > DRAIN_MAX_BYTES) stop(true);
    else arm();
  };
  const onEnd = () => stop(false);
  req.on("data", onData);
  req.on("end", onEnd);
  req.on("close", onEnd);
  arm();
  req.resume();
}

/**
 * Headers as the gate needs them. Node keeps only the first of repeated Authorization headers in
 * `req.headers`; the gate must see all of them to refuse the ambiguous case (RFC 6750 §2.1 allows one).
 */
export function gateHeaders(req: IncomingMessage): Record<string, string | string[] | undefined> {
  // Counted on rawHeaders (names at even indexes): `headersDistinct` builds a copy of every header.
  const raw = req.rawHeaders;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13 && name.toLowerCase() === "authorization") count++;
  }
  if (count > 1) return { ...req.headers, authorization: req.headersDistinct.authorization };
  return req.headers;
}
