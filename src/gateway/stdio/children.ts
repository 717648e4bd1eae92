import type { Logger } from "../../observe/logger.js";
import { spawnStdioChild } from "./child-process.js";
import { ChildRelay } from "./relay.js";

export interface ChildSupervisorOptions {
  command: readonly string[];
  /** The child's whole environment (already filtered by `buildChildEnv`). */
  env: Record<string, string>;
  cwd?: string;
  logger: Logger;
  maxChildren: number;
  /** Fresh, never used children kept started ahead of demand. */
  spareChildren: number;
  /** Children in use elsewhere (sessions, sessions starting, pool), counted against the maximum. */
  inUse(): number;
}

/**
 * Starts stdio children and keeps the count within `maxChildren`, including a few spares booted
 * ahead of demand. A spare has never served anyone; handing it to a session is how it stops being
 * one (see docs/stdio.md).
 */
export interface ChildSupervisor {
  /**
   * Start a child wired to a relay; `onGone` runs once when it exits for any reason. `env` adds to
   * the child's environment (the upstream identity of its session).
   */
  start(tag: string, onGone: () => void, env?: Readonly<Record<string, string>>): ChildRelay;
  /**
   * A booted spare (re-tagged, now reporting its exit to `onGone`), or a new child. A child that
   * needs its own environment (`env`) is always a new one: a spare was started without it.
   */
  acquire(tag: string, onGone: () => void, env?: Readonly<Record<string, string>>): ChildRelay;
  /** Whether one more child may run now; ends a spare to make room if need be. */
  makeRoom(): boolean;
  /** Top the spares up (after a session started or ended). */
  refill(): void;
  readonly spareCount: number;
  sparePids(): number[];
  /** Stop starting children; end the spares. */
  close(graceMs: number): Promise<void>;
  readonly closing: boolean;
}

/**
 * @example
 * const sup = createChildSupervisor({ command, env, logger, maxChildren: 100, spareChildren: 1, inUse: () => 0 });
 * const relay = sup.acquire("a1b2c3d4…", () => {});
 */
export function createChildSupervisor(options: ChildSupervisorOptions): ChildSupervisor {
  const { logger } = options;
  const spares: ChildRelay[] = [];
  const goneHandlers = new WeakMap<ChildRelay, () => void>();
  let closing = false;
  let spareSeq = 0;

  const live = () => options.inUse() + spares.length;

  function start(tag: string, onGone: () => void, env?: Readonly<Record<string, string>>): ChildRelay {
    let relay: ChildRelay | undefined;
    const child = spawnStdioChild({
      command: options.command,
      env: env && Object.keys(env).length > 0 ? { ...options.env, ...env } : options.env,
      ...(options.cwd ? { cwd: options.cwd } : {}),
      logger,
      tag,
      onMessage: (value, text) => relay?.receive(value, text),
      onExit: (info) => {
        logger[closing ? "debug" : "warn"](
          { upstream: child.tag, pid: child.pid, ...info },
          "stdio upstream exited",
        );
        relay?.failAll();
        if (relay) goneHandlers.get(relay)?.();
      },
    });
    relay = new ChildRelay(child);
    goneHandlers.set(relay, onGone);
    return relay;
  }

  function takeSpare(): ChildRelay | undefined {
    while (spares.length > 0) {
      const r = spares.shift()!;
      if (r.child.alive) return r;
    }
    return undefined;
  }

  function refill() {
    // A spare that dies is not replaced until the next session starts or ends: a command that
    // crashes at once must not turn into a spawn loop.
    while (!closing && spares.length < options.spareChildren && live() < options.maxChildren) {
      let relay: ChildRelay;
      try {
        relay = start(`spare-${++spareSeq}`, () => {
          const i = spares.indexOf(relay);
          if (i !== -1) spares.splice(i, 1);
        });
      } catch {
        return;
      }
      spares.push(relay);
    }
  }

  return {
    start,
    acquire(tag, onGone, env) {
      if (env && Object.keys(env).length > 0) return start(tag, onGone, env);
      const spare = takeSpare();
      if (!spare) return start(tag, onGone);
      spare.child.tag = tag;
      goneHandlers.set(spare, onGone);
      return spare;
    },
    makeRoom() {
      if (closing) return false;
      if (live() < options.maxChildren) return true;
      const spare = takeSpare();
      if (spare) void spare.child.terminate(0);
      return spare !== undefined;
    },
    refill,
    get spareCount() {
      return spares.length;
    },
    sparePids: () => spares.map((r) => r.child.pid).filter((p): p is number => p !== undefined),
    get closing() {
      return closing;
    },
    async close(graceMs) {
      closing = true;
      await Promise.all(spares.splice(0).map((r) => r.child.terminate(graceMs)));
    },
  };
}
