import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");

/** examples/upstream-with-identity.ts as a real child process (tsx, which honours tsconfig paths). */
export interface ExampleUpstream {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Start the example on a free port; resolves once it prints its URL. */
export async function startExampleUpstream(env: {
  GATEWAY_URL: string;
  AUDIENCE?: string;
  GATEWAY_ISSUER?: string;
  PORT?: string;
}): Promise<ExampleUpstream> {
  const child = spawn(
    process.execPath,
    [resolve(ROOT, "node_modules/tsx/dist/cli.mjs"), resolve(ROOT, "examples/upstream-with-identity.ts")],
    { cwd: ROOT, env: { PATH: process.env.PATH, PORT: "0", ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let err = "";
  child.stderr!.on("data", (d) => {
    err += String(d);
  });
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`example did not start: ${err}`)), 45_000);
    let out = "";
    child.stdout!.on("data", (d) => {
      out += String(d);
      const m = /listening (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(m[1]!);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`example exited ${code}: ${err}`));
    });
  });
  return {
    url,
    child,
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) return done();
        child.once("exit", () => done());
        child.kill("SIGTERM");
      }),
  };
}
