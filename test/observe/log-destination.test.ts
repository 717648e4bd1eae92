import { spawn, spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLineDestination } from "../../src/observe/log-destination.js";

/** Log lines written to a real file descriptor (a temporary file), read back. */
describe("the log line destination", () => {
  let dir: string;
  let file: string;
  let fd: number;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "mcpgate-logdest-"));
    file = join(dir, "out.log");
    fd = openSync(file, "a");
  });
  afterEach(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  const read = () => readFileSync(file, "utf8");
  const flushed = (d: ReturnType<typeof createLineDestination>) =>
    new Promise<void>((resolve, reject) => d.flush((err) => (err ? reject(err) : resolve())));

  it("holds short lines until a batch is full, a flush, or the interval, and keeps their order", async () => {
    const d = createLineDestination({ fd, minBytes: 1000, intervalMs: 60_000 });
    for (let i = 0; i < 5; i++) d.write(`{"n":${i}}\n`);
    await new Promise((r) => setTimeout(r, 50));
    expect(read()).toBe("");
    await flushed(d);
    expect(read()).toBe([0, 1, 2, 3, 4].map((n) => `{"n":${n}}\n`).join(""));
  });

  it("writes a full batch at once, and a partial one after the interval without a flush", async () => {
    const d = createLineDestination({ fd, minBytes: 100, intervalMs: 100 });
    const long = `${JSON.stringify({ pad: "x".repeat(120) })}\n`;
    d.write(long);
    await new Promise((r) => setTimeout(r, 30));
    expect(read()).toBe(long);
    d.write('{"late":true}\n');
    await new Promise((r) => setTimeout(r, 30));
    expect(read()).toBe(long);
    await new Promise((r) => setTimeout(r, 200));
    expect(read()).toBe(`${long}{"late":true}\n`);
  });

  it("drops lines past maxBytes while a write is in progress, counts them, and says so in the log", async () => {
    const d = createLineDestination({ fd, minBytes: 10, maxBytes: 200, intervalMs: 60_000 });
    const line = `${JSON.stringify({ pad: "y".repeat(40) })}\n`;
    // One synchronous burst: the first line starts a write; the rest wait, up to 200 characters.
    let accepted = 0;
    for (let i = 0; i < 50; i++) if (d.write(line)) accepted++;
    expect(d.dropped).toBe(50 - accepted);
    expect(d.dropped).toBeGreaterThan(40);
    await flushed(d);
    const out = read().trim().split("\n");
    expect(out.filter((l) => l === line.trim())).toHaveLength(accepted);
    const report = JSON.parse(out.at(-1)!);
    expect(report).toMatchObject({ level: 40, dropped: d.dropped });
    expect(report.msg).toContain("log lines dropped");
  });

  /** Run `body` in a child process (after importing the destination), stdout to `stdout`. */
  function child(body: string[], stdout: "pipe" | number = "pipe") {
    const script = [
      `import { createLineDestination } from ${JSON.stringify(join(import.meta.dirname, "../../src/observe/log-destination.ts"))};`,
      ...body,
    ].join("\n");
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", stdout, "pipe"],
      encoding: "utf8",
      timeout: 50_000,
    });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout ?? "";
  }

  it("writes what waits when the process exits without a flush", () => {
    const lines = child([
      "const d = createLineDestination({ minBytes: 1 << 20, intervalMs: 60_000 });",
      'for (let i = 0; i < 1000; i++) d.write(`{"i":${i}}\\n`);',
      "process.exit(0);",
    ])
      .trim()
      .split("\n");
    expect(lines).toHaveLength(1000);
    expect(lines[999]).toBe('{"i":999}');
  }, 60_000);

  it("writes each line once when the process exits right after batches went to a file", () => {
    child(
      [
        "const d = createLineDestination({ minBytes: 64, intervalMs: 60_000 });",
        'for (let i = 0; i < 500; i++) d.write(`{"i":${i}}\\n`);',
        "process.exit(0);",
      ],
      fd,
    );
    const lines = read().trim().split("\n");
    expect(lines).toEqual(Array.from({ length: 500 }, (_, i) => `{"i":${i}}`));
  }, 60_000);

  it("waits for a slow reader of a non-blocking pipe (EAGAIN) without losing or blocking", async () => {
    // The child's stdout is a pipe Node made non-blocking (process.stdout is touched); the parent
    // reads nothing for 600 ms, so the 64 KiB pipe fills and writes get EAGAIN, then reads it all.
    const script = [
      `import { createLineDestination } from ${JSON.stringify(join(import.meta.dirname, "../../src/observe/log-destination.ts"))};`,
      "void process.stdout.isTTY;",
      "const d = createLineDestination({ minBytes: 4096, maxBytes: 8 << 20 });",
      "const started = Date.now();",
      'for (let i = 0; i < 20000; i++) d.write(`{"i":${i},"pad":"${"z".repeat(40)}"}\n`);',
      // The event loop stays free while the pipe is full: a timer set now fires on time.
      "setTimeout(() => process.stderr.write(`timer after ${Date.now() - started} ms\\n`), 50);",
      "d.flush(() => process.exit(0));",
    ].join("\n");
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    let err = "";
    child.stderr.on("data", (c) => {
      err += c;
    });
    const chunks: Buffer[] = [];
    child.stdout.pause();
    await new Promise((r) => setTimeout(r, 600));
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.stdout.resume();
    const code = await exited;
    await new Promise((r) => setTimeout(r, 50));
    expect(code, err).toBe(0);
    const lines = Buffer.concat(chunks).toString("utf8").trim().split("\n");
    expect(lines).toHaveLength(20000);
    expect(JSON.parse(lines[19999]!).i).toBe(19999);
    const timer = Number(/timer after (\d+) ms/.exec(err)?.[1]);
    expect(timer).toBeLessThan(400);
  }, 60_000);

  it("loses, tears and reorders nothing when a synchronous flush takes over a write to a full pipe", async () => {
    // What pino does on logger.fatal(): flushSync in the middle of asynchronous writes.
    const script = [
      `import { createLineDestination } from ${JSON.stringify(join(import.meta.dirname, "../../src/observe/log-destination.ts"))};`,
      "void process.stdout.isTTY;",
      "const d = createLineDestination({ minBytes: 4096, maxBytes: 8 << 20 });",
      'const line = (i) => `{"i":${i},"pad":"${"q".repeat(60)}"}\\n`;',
      "for (let i = 0; i < 3000; i++) d.write(line(i));",
      "setTimeout(() => {",
      "  d.flushSync();",
      "  for (let i = 3000; i < 6000; i++) d.write(line(i));",
      "  d.flush(() => process.exit(0));",
      "}, 50);",
    ].join("\n");
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    const chunks: Buffer[] = [];
    child.stdout.pause();
    // Long enough for the child to start (tsx) and fill the pipe before anyone reads.
    await new Promise((r) => setTimeout(r, 2_000));
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.stdout.resume();
    expect(await exited).toBe(0);
    await new Promise((r) => setTimeout(r, 50));
    const seen = Buffer.concat(chunks)
      .toString("utf8")
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { i: number }).i);
    // Every line, whole; the first sight of each in order (a line may repeat once: a write the
    // flush took over may have reached the pipe before it did; never a whole retried batch).
    const first: number[] = [];
    const had = new Set<number>();
    for (const i of seen) {
      if (had.has(i)) continue;
      had.add(i);
      first.push(i);
    }
    expect(first).toEqual(Array.from({ length: 6000 }, (_, i) => i));
    expect(seen.length - 6000).toBeLessThan(300);
  }, 60_000);
});
