import type { IncomingMessage } from "node:http";

export type BodyResult =
  | { ok: true; text: string }
  | { ok: false; tooLarge: true }
  | { ok: false; tooLarge: false };

/**
 * Read a request body up to `limit` bytes. Stops reading (and reports tooLarge) as soon as the
 * limit is passed, so a hostile client cannot make us buffer more than `limit`.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.resolve({ ok: false, tooLarge: true });
  }
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
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.resume();
        finish({ ok: false, tooLarge: true });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish({ ok: true, text: Buffer.concat(chunks).toString("utf8") });
    const onError = () => finish({ ok: false, tooLarge: false });
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

/**
 * Headers as the gate needs them. Node keeps only the first of repeated Authorization headers in
 * `req.headers`; the gate must see all of them to refuse the ambiguous case (RFC 6750 §2.1 allows one).
 */
export function gateHeaders(req: IncomingMessage): Record<string, string | string[] | undefined> {
  const all = req.headersDistinct?.authorization;
  if (all && all.length > 1) return { ...req.headers, authorization: all };
  return req.headers;
}
