import { fstatSync, write, writeSync } from "node:fs";
import { isatty } from "node:tty";

/**
 * Where the gateway's JSON log lines go (stdout by default): batched, asynchronous, bounded.
 *
 * Lines are collected and written together once `minBytes` wait, or at the latest `intervalMs`
 * after the first one. To a pipe, a socket or a terminal the writes are asynchronous and a write in
 * progress is never joined by another, so a slow reader of stdout (a full pipe, a paused screen) is
 * waited for without blocking requests; to a file or /dev/null they are synchronous (cheaper). At
 * most `maxBytes` wait: past that, lines
 * are dropped and counted, and the next write says how many. At process exit (and on `flushSync`)
 * what waits is written synchronously.
 *
 * pino's own asynchronous destination (sonic-boom) measures the byte length of its whole pending
 * buffer on every line, which under load cost the gateway ~10 µs per request line
 * (bench/profile-gateway.ts); here a line costs an array push.
 *
 * @example const dest = createLineDestination(); pino(options, dest);
 */
export interface LineDestination {
  /** Queue one line (pino calls this). Returns false when the line was dropped. */
  write(line: string): boolean;
  /** Write what waits; `cb` once it is written (or could not be). */
  flush(cb?: (err?: Error | null) => void): void;
  /** Write what waits, synchronously (exit paths). */
  flushSync(): void;
  /** Lines dropped because `maxBytes` were waiting. */
  readonly dropped: number;
}

export interface LineDestinationOptions {
  /** File descriptor (default 1, stdout). */
  fd?: number;
  /** Write once this many characters wait (default 4096). */
  minBytes?: number;
  /** Drop lines past this many waiting characters (default 16 MiB). */
  maxBytes?: number;
  /** Write waiting lines at the latest this long after the first (default 1000 ms). */
  intervalMs?: number;
}

const live = new Set<WeakRef<LineDestination>>();
let exitHooked = false;

function flushAllAtExit(): void {
  for (const ref of live) ref.deref()?.flushSync();
}

/**
 * A regular file or /dev/null: writes to it do not wait on a reader. A terminal can (a paused
 * screen, a `docker run -t` nobody reads): it is written to asynchronously, like a pipe.
 */
function writesAtOnce(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    return st.isFile() || (st.isCharacterDevice() && !isatty(fd));
  } catch {
    return false;
  }
}

/** Is this the error a non-blocking descriptor gives when its reader is behind? */
const wouldBlock = (err: NodeJS.ErrnoException | null | undefined) => err?.code === "EAGAIN";

/** Create a destination (see {@link LineDestination}). */
export function createLineDestination(options: LineDestinationOptions = {}): LineDestination {
  const fd = options.fd ?? 1;
  const minBytes = options.minBytes ?? 4096;
  const maxBytes = options.maxBytes ?? 16 * 1024 * 1024;
  const intervalMs = options.intervalMs ?? 1000;
  let lines: string[] = [];
  let waiting = 0;
  let dropped = 0;
  let reported = 0;
  /** The batch being written now, or undefined. */
  let inFlight: Buffer | undefined;
  /** What of it is not known to be written yet (an asynchronous write may be under way). */
  let unwritten: { data: Buffer; offset: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let callbacks: Array<(err?: Error | null) => void> = [];

  function take(): Buffer | undefined {
    if (dropped > reported) {
      lines.push(
        `${JSON.stringify({ level: 40, time: new Date().toISOString(), service: "mcpgate", dropped: dropped - reported, msg: "log lines dropped: stdout was not read fast enough" })}\n`,
      );
      reported = dropped;
    }
    if (lines.length === 0) return undefined;
    const data = Buffer.from(lines.length === 1 ? lines[0]! : lines.join(""));
    lines = [];
    waiting = 0;
    return data;
  }

  function done(err: Error | null): void {
    inFlight = undefined;
    if (waiting >= minBytes || (callbacks.length > 0 && waiting > 0)) {
      start();
      return;
    }
    if (waiting > 0 && !timer) {
      timer = setTimeout(start, intervalMs);
      timer.unref();
    }
    const cbs = callbacks;
    callbacks = [];
    for (const cb of cbs) cb(err);
  }

  // A regular file or /dev/null takes a write at once: batches go out synchronously, which costs a
  // fraction of a hand-off to libuv's threadpool. A pipe, a socket or a terminal may be full for as
  // long as its reader likes: batches go out asynchronously and requests never wait for them.
  const direct = writesAtOnce(fd);
  // A synchronous flush (exit, pino's fatal) takes over what an asynchronous write had under way:
  // that write's late callbacks and retries belong to an older generation and are ignored.
  let generation = 0;

  function writeOut(data: Buffer, offset: number, gen = generation): void {
    if (gen !== generation) return;
    unwritten = offset < data.length ? { data, offset } : undefined;
    if (direct) {
      try {
        const written = writeSync(fd, data, offset, data.length - offset);
        if (offset + written < data.length) writeOut(data, offset + written);
        else {
          unwritten = undefined;
          queueMicrotask(() => done(null));
        }
        return;
      } catch (err) {
        if (!wouldBlock(err as NodeJS.ErrnoException)) {
          queueMicrotask(() => done(err as Error));
          return;
        }
        // Not so direct after all: continue asynchronously.
      }
    }
    write(fd, data, offset, data.length - offset, null, (err, written) => {
      if (gen !== generation) return;
      if (wouldBlock(err)) {
        // The reader is behind: try again shortly (lines keep queueing, bounded by maxBytes). This
        // timer holds the process open: lines being written are not abandoned.
        setTimeout(writeOut, 10, data, offset, gen);
        return;
      }
      if (err) {
        unwritten = undefined;
        done(err);
      } else if (offset + written < data.length) writeOut(data, offset + written, gen);
      else {
        unwritten = undefined;
        done(null);
      }
    });
  }

  function start(): void {
    clearTimeout(timer);
    timer = undefined;
    if (inFlight) return;
    inFlight = take();
    if (inFlight) writeOut(inFlight, 0);
    else done(null);
  }

  const dest: LineDestination = {
    write(line) {
      if (waiting + line.length > maxBytes) {
        dropped++;
        return false;
      }
      lines.push(line);
      waiting += line.length;
      if (inFlight) return true;
      if (waiting >= minBytes) start();
      else if (!timer) {
        timer = setTimeout(start, intervalMs);
        timer.unref();
      }
      return true;
    },
    flush(cb) {
      if (cb) callbacks.push(cb);
      if (!inFlight) start();
    },
    flushSync() {
      clearTimeout(timer);
      timer = undefined;
      // What an asynchronous write has not confirmed is written again: a line may then appear twice
      // at exit, never be lost.
      const pending = unwritten ? [unwritten.data.subarray(unwritten.offset)] : [];
      unwritten = undefined;
      inFlight = undefined;
      generation++;
      const rest = take();
      if (rest) pending.push(rest);
      for (const data of pending) {
        let offset = 0;
        for (let tries = 0; offset < data.length && tries < 1000; tries++) {
          try {
            offset += writeSync(fd, data, offset, data.length - offset);
          } catch (err) {
            if (!wouldBlock(err as NodeJS.ErrnoException)) break;
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
          }
        }
      }
      // Whoever waited on the write taken over is answered now.
      const cbs = callbacks;
      callbacks = [];
      for (const cb of cbs) cb(null);
    },
    get dropped() {
      return dropped;
    },
  };
  live.add(new WeakRef(dest));
  if (!exitHooked) {
    exitHooked = true;
    process.once("exit", flushAllAtExit);
  }
  return dest;
}
