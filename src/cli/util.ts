import { isMcpGateError } from "../core/errors.js";

/** A user error: one line on stderr, exit code 2, no stack trace (DESIGN.md §6). */
export class UsageError extends Error {}

export function fail(message: string): never {
  throw new UsageError(message);
}

export function parsePort(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`invalid port "${value}"`);
  return n;
}

/** Print a user-facing error and exit 2; unexpected errors exit 1 with their message only. */
export function reportAndExit(err: unknown): never {
  if (err instanceof UsageError || isMcpGateError(err)) {
    process.stderr.write(`mcpgate: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`mcpgate: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
  process.exit(1);
}
