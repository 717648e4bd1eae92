import { userInfo } from "node:os";
import type { Command } from "commander";
import { isKeyId, parseApiKey } from "../authn/api-key.js";
import { issueApiKey, rotateApiKey } from "../authn/key-lifecycle.js";
import { type GatewayConfig, loadConfigFile, SCOPE_PATTERN, signingKeyLocation } from "../config.js";
import type { AuditEvent } from "../core/audit-event.js";
import { parseDuration } from "../core/duration.js";
import { McpGateError } from "../core/errors.js";
import { openAuditSinks } from "../gateway/assembly/observability.js";
import { createAuditTrail } from "../observe/audit.js";
import type { KeyRecord, KeyStore } from "../stores/key-store.js";
import { keyStatus } from "../stores/key-store.js";
import { openKeyStore } from "../stores/open-key-store.js";
import { SIGNING_KEY_SECRET_ENV } from "../stores/signing-key-seal.js";
import {
  openSigningKeyStore,
  type SigningAlg,
  type SigningKeyInfo,
  type SigningKeyStore,
} from "../stores/signing-keys.js";

/**
 * `mcpgate keys create|list|revoke|rotate` (DESIGN.md §6). The store comes from `--store`, else
 * `MCPGATE_STORE`, else the config file's `auth.apiKeys.store`, else `sqlite:./mcpgate.db`. The
 * pepper comes from the environment variable named by `auth.apiKeys.pepperEnv` (default
 * `MCPGATE_KEY_PEPPER`): it must match the gateway's. User errors print one line and exit 2.
 */

export const DEFAULT_KEY_STORE = "sqlite:./mcpgate.db";
export const DEFAULT_PEPPER_ENV = "MCPGATE_KEY_PEPPER";

interface CommonOptions {
  store?: string;
  config?: string;
  redis?: string;
  audit?: string;
}

interface Context {
  /** Record a key lifecycle event in the audit trail (docs/observability.md). */
  audit(event: Omit<AuditEvent, "time" | "actor">): void;
  store: KeyStore;
  pepper?: string;
  redisUrl?: string;
  redisPrefix: string;
}

/** A mistake on the command line: printed as one line, exit 2. */
class UsageError extends Error {}

function resolveSettings(opts: CommonOptions): {
  store: string;
  pepper?: string;
  redisUrl?: string;
  redisPrefix: string;
  auditFile?: string;
} {
  let config: GatewayConfig | undefined;
  if (opts.config) config = loadConfigFile(opts.config);
  const store = opts.store ?? process.env.MCPGATE_STORE ?? config?.auth.apiKeys?.store ?? DEFAULT_KEY_STORE;
  const pepperEnv = config?.auth.apiKeys?.pepperEnv ?? DEFAULT_PEPPER_ENV;
  const pepper = process.env[pepperEnv] || undefined;
  const redisUrl = opts.redis ?? config?.state.redis;
  const auditFile = opts.audit ?? config?.logging.audit;
  const out: { store: string; pepper?: string; redisUrl?: string; redisPrefix: string; auditFile?: string } =
    {
      store,
      redisPrefix: config?.state.prefix ?? "mcpgate:",
    };
  if (pepper !== undefined) out.pepper = pepper;
  if (redisUrl !== undefined) out.redisUrl = redisUrl;
  if (auditFile !== undefined) out.auditFile = auditFile;
  return out;
}

/**
 * The CLI's audit trail: the file (`--audit` / logging.audit) and, for a PostgreSQL key store, its
 * audit table. An audit failure is reported but does not undo or fail the operation.
 */
async function openCliAudit(
  auditFile: string | undefined,
  storeLocation: string,
): Promise<{ audit: Context["audit"]; close(): Promise<void> }> {
  const sinks = await openAuditSinks({
    logging: { audit: auditFile },
    auth: { apiKeys: { store: storeLocation } },
  }).catch((err) => {
    process.stderr.write(
      `mcpgate: warning: audit trail unavailable (${(err as Error).message.split("\n")[0]})\n`,
    );
    return [];
  });
  const trail = createAuditTrail({
    sinks,
    onError: (sink) => process.stderr.write(`mcpgate: warning: could not write the audit trail (${sink})\n`),
  });
  const actor = `cli:${safeUser()}`;
  return {
    audit: (event) => trail.record({ ...event, time: new Date().toISOString(), actor }),
    close: () => trail.close(),
  };
}

async function withStore(opts: CommonOptions, fn: (ctx: Context) => Promise<void>): Promise<void> {
  const settings = resolveSettings(opts);
  const store = await openKeyStore(settings.store);
  const trail = await openCliAudit(settings.auditFile, settings.store);
  try {
    const ctx: Context = {
      store,
      redisPrefix: settings.redisPrefix,
      audit: trail.audit,
    };
    if (settings.pepper !== undefined) ctx.pepper = settings.pepper;
    if (settings.redisUrl !== undefined) ctx.redisUrl = settings.redisUrl;
    await fn(ctx);
  } finally {
    await trail.close();
    await store.close().catch(() => {});
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}

/** Tell running gateways at once (Redis pub/sub) when one is configured; otherwise their ≤1 s cache does. */
async function announce(ctx: Context, id: string): Promise<void> {
  if (!ctx.redisUrl) return;
  const { createRedisKeyEvents } = await import("../stores/redis-key-events.js");
  const events = createRedisKeyEvents({ url: ctx.redisUrl, prefix: ctx.redisPrefix });
  try {
    await events.publishRevoked(id);
  } catch (err) {
    // The change is stored; gateways pick it up when their cache entry expires.
    process.stderr.write(
      `mcpgate: warning: could not notify gateways via Redis (${(err as Error).message})\n`,
    );
  } finally {
    await events.close();
  }
}

function parseScopes(value: string | undefined): string[] {
  if (value === undefined) return [];
  const scopes = value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const s of scopes) {
    if (!SCOPE_PATTERN.test(s)) {
      throw new McpGateError(
        "ERR_SCOPE_SYNTAX",
        `invalid scope "${s.slice(0, 40)}": printable ASCII without spaces, quotes or backslashes (RFC 6749 §3.3)`,
      );
    }
  }
  return [...new Set(scopes)];
}

function parsePositiveDuration(flag: string, value: string, allowZero: boolean): number {
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
  if (ms < 0 || (!allowZero && ms === 0))
    throw new UsageError(`${flag}: must be ${allowZero ? "≥ 0" : "> 0"}`);
  return ms;
}

/** Accept an id, a display prefix (`mcpg_<id>`) or a whole key; never echo what was typed. */
function parseIdArgument(value: string): string {
  if (isKeyId(value)) return value;
  if (value.startsWith("mcpg_") && isKeyId(value.slice(5))) return value.slice(5);
  const parsed = parseApiKey(value);
  if (parsed.ok) return parsed.id;
  throw new UsageError("not a key id: expected 8 base62 characters or mcpg_<id>");
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());
const short = (ms: number | undefined): string =>
  ms === undefined ? "-" : new Date(ms).toISOString().slice(0, 16).replace("T", " ");

/**
 * The JSON shape of a key in `keys list --json`: every field, never a secret or hash.
 *
 * @example publicKeyJson(record, Date.now()).status // "active"
 */
export function publicKeyJson(r: KeyRecord, now: number): Record<string, unknown> {
  return {
    id: r.id,
    displayPrefix: `mcpg_${r.id}`,
    name: r.name,
    tenant: r.tenant ?? null,
    scopes: [...r.scopes],
    probe: r.probe,
    createdAt: iso(r.createdAt),
    expiresAt: iso(r.expiresAt),
    revokedAt: iso(r.revokedAt),
    lastUsedAt: iso(r.lastUsedAt),
    replaces: r.replaces ?? null,
    replacedBy: r.replacedBy ?? null,
    graceUntil: iso(r.graceUntil),
    rateLimit: r.rateLimit ?? null,
    status: keyStatus(r, now),
  };
}

function issuedJson(key: string, r: KeyRecord): Record<string, unknown> {
  return {
    id: r.id,
    key,
    name: r.name,
    scopes: [...r.scopes],
    expiresAt: iso(r.expiresAt),
    probe: r.probe,
    tenant: r.tenant ?? null,
  };
}

function printIssued(verb: string, key: string, r: KeyRecord): void {
  const lines = [
    `${verb} API key mcpg_${r.id} "${r.name}"`,
    `  tenant:  ${r.tenant ?? "-"}`,
    `  scopes:  ${r.scopes.length ? r.scopes.join(", ") : "-"}`,
    `  expires: ${iso(r.expiresAt) ?? "never"}`,
  ];
  if (r.probe) lines.push("  probe:   yes (read-only: initialize, ping, discover and list methods only)");
  lines.push("This key is shown once and cannot be recovered; store it now:", key);
  process.stdout.write(`${lines.join("\n")}\n`);
}

function printTable(records: KeyRecord[], now: number): void {
  if (records.length === 0) {
    process.stdout.write("No keys.\n");
    return;
  }
  const header = ["ID", "PREFIX", "NAME", "TENANT", "SCOPES", "CREATED", "EXPIRES", "LAST USED", "STATUS"];
  const rows = records.map((r) => {
    let status: string = keyStatus(r, now);
    if (status === "grace") status = `grace until ${short(r.graceUntil)}`;
    if (r.probe) status += " (probe)";
    return [
      r.id,
      `mcpg_${r.id}`,
      r.name,
      r.tenant ?? "-",
      r.scopes.join(",") || "-",
      short(r.createdAt),
      short(r.expiresAt),
      short(r.lastUsedAt),
      status,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]) =>
    row
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  process.stdout.write(`${[fmt(header), ...rows.map(fmt)].join("\n")}\n`);
}

/** Run an action: user errors → one line on stderr and exit code 2; never a stack trace. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const message = (err instanceof Error ? err.message : String(err)).split("\n")[0];
      const user = err instanceof UsageError || err instanceof McpGateError;
      process.stderr.write(`mcpgate: error: ${message}\n`);
      process.exitCode = user ? 2 : 1;
    }
  };
}

/** Commander's own parse errors (unknown flag, missing argument) also exit 2 (DESIGN.md §6). */
function usageExit(cmd: Command): Command {
  return cmd.exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });
}

const common = (cmd: Command): CommonOptions => cmd.optsWithGlobals() as CommonOptions;

/**
 * Register `keys` and its subcommands on a commander program.
 *
 * @example
 * const program = new Command("mcpgate");
 * registerKeysCommand(program);
 * await program.parseAsync(process.argv);
 */
export function registerKeysCommand(program: Command): Command {
  const keys = usageExit(
    program
      .command("keys")
      .description("manage stored API keys (create, list, revoke, rotate)")
      .option(
        "--store <location>",
        "key store: sqlite:PATH | postgres://… (default: $MCPGATE_STORE, config, sqlite:./mcpgate.db)",
      )
      .option("--config <file>", "configuration file to read auth.apiKeys.store and state.redis from")
      .option(
        "--audit <file>",
        "append key lifecycle events to this audit file (default: the config's logging.audit)",
      )
      .option("--redis <url>", "announce revocations on this Redis (default: the config's state.redis)"),
  );

  usageExit(
    keys
      .command("create")
      .description("create a key and print it once")
      .requiredOption("--name <name>", "a label for the key's owner or purpose")
      .option("--scopes <list>", "comma-separated scopes, e.g. tools:call,admin")
      .option("--expires <duration>", "lifetime, e.g. 90d, 24h (default: never)")
      .option("--tenant <tenant>", "tenant the key belongs to")
      .option("--probe", "read-only monitoring key (initialize, ping, discover, */list only)")
      .option("--rate-limit <perMinute>", "per-key request limit per minute")
      .option("--json", "print JSON")
      .action(
        action(async (opts: Record<string, string | boolean | undefined>, cmd: Command) => {
          const name = String(opts.name).trim();
          if (name === "") throw new UsageError("--name must not be empty");
          const scopes = parseScopes(opts.scopes as string | undefined);
          const expiresInMs =
            opts.expires === undefined
              ? undefined
              : parsePositiveDuration("--expires", String(opts.expires), false);
          let perMinute: number | undefined;
          if (opts.rateLimit !== undefined) {
            perMinute = Number(opts.rateLimit);
            if (!Number.isInteger(perMinute) || perMinute <= 0)
              throw new UsageError("--rate-limit must be a positive integer");
          }
          await withStore(common(cmd), async (ctx) => {
            const issued = await issueApiKey(ctx.store, {
              name,
              scopes,
              ...(opts.tenant !== undefined ? { tenant: String(opts.tenant) } : {}),
              ...(expiresInMs !== undefined ? { expiresInMs } : {}),
              ...(perMinute !== undefined ? { rateLimit: { perMinute } } : {}),
              ...(ctx.pepper !== undefined ? { pepper: ctx.pepper } : {}),
              probe: opts.probe === true,
            });
            ctx.audit({
              type: "key_created",
              other: `mcpg_${issued.record.id}`,
              detail: {
                scopes: issued.record.scopes.join(","),
                probe: issued.record.probe,
                tenant: issued.record.tenant,
              },
            });
            if (opts.json) process.stdout.write(`${JSON.stringify(issuedJson(issued.key, issued.record))}\n`);
            else printIssued("Created", issued.key, issued.record);
          });
        }),
      ),
  );

  usageExit(
    keys
      .command("list")
      .description("list keys (never shows a secret)")
      .option("--tenant <tenant>", "only this tenant's keys")
      .option("--json", "print JSON")
      .action(
        action(async (opts: { tenant?: string; json?: boolean }, cmd: Command) => {
          await withStore(common(cmd), async (ctx) => {
            const records = await ctx.store.list(
              opts.tenant === undefined ? undefined : { tenant: opts.tenant },
            );
            const now = Date.now();
            if (opts.json)
              process.stdout.write(`${JSON.stringify(records.map((r) => publicKeyJson(r, now)))}\n`);
            else printTable(records, now);
          });
        }),
      ),
  );

  usageExit(
    keys
      .command("revoke")
      .description("revoke a key now")
      .argument("<id>", "key id or display prefix (mcpg_<id>)")
      .option("--json", "print JSON")
      .action(
        action(async (idArg: string, opts: { json?: boolean }, cmd: Command) => {
          const id = parseIdArgument(idArg);
          await withStore(common(cmd), async (ctx) => {
            const r = await ctx.store.revoke(id);
            if (!r.ok) throw new McpGateError("ERR_KEY_NOT_FOUND", `no key with id ${id}`);
            if (!r.alreadyRevoked) await announce(ctx, id);
            ctx.audit({
              type: "key_revoked",
              other: `mcpg_${id}`,
              detail: { alreadyRevoked: r.alreadyRevoked },
            });
            if (opts.json) {
              process.stdout.write(
                `${JSON.stringify({ id, revokedAt: iso(r.record.revokedAt), alreadyRevoked: r.alreadyRevoked })}\n`,
              );
            } else {
              process.stdout.write(
                `${r.alreadyRevoked ? "Already revoked" : "Revoked"} mcpg_${id} "${r.record.name}" (${iso(r.record.revokedAt)})\n`,
              );
            }
          });
        }),
      ),
  );

  usageExit(
    keys
      .command("rotate")
      .description("issue a successor key; the old key stays valid for the grace period")
      .argument("<id>", "key id or display prefix (mcpg_<id>)")
      .option("--grace <duration>", "how long the old key keeps working, e.g. 24h", "0s")
      .option("--json", "print JSON")
      .action(
        action(async (idArg: string, opts: { grace: string; json?: boolean }, cmd: Command) => {
          const id = parseIdArgument(idArg);
          const graceMs = parsePositiveDuration("--grace", opts.grace, true);
          await withStore(common(cmd), async (ctx) => {
            const r = await rotateApiKey(ctx.store, id, {
              graceMs,
              ...(ctx.pepper !== undefined ? { pepper: ctx.pepper } : {}),
            });
            if (!r.ok) {
              if (r.reason === "not_found")
                throw new McpGateError("ERR_KEY_NOT_FOUND", `no key with id ${id}`);
              throw new UsageError(`key ${id} cannot be rotated: it is ${r.reason.replace("_", " ")}`);
            }
            await announce(ctx, id);
            ctx.audit({
              type: "key_rotated",
              other: `mcpg_${id}`,
              detail: { successor: `mcpg_${r.record.id}`, graceUntil: iso(r.graceUntil) ?? undefined },
            });
            if (opts.json) {
              process.stdout.write(
                `${JSON.stringify({ ...issuedJson(r.key, r.record), replaces: id, graceUntil: iso(r.graceUntil) })}\n`,
              );
            } else {
              printIssued("Rotated to", r.key, r.record);
              process.stderr.write(`Old key mcpg_${id} stays valid until ${iso(r.graceUntil)}.\n`);
            }
          });
        }),
      ),
  );
  registerSigningKeyCommands(keys);
  return keys;
}

/**
 * The gateway's signing keys (identity assertions, authServer tokens): where they live is
 * `--store`, else `MCPGATE_STORE`, else the config's `identity.keyStore`, then `auth.apiKeys.store`,
 * else `sqlite:./mcpgate.db` — the same store the gateway opens.
 */
async function withSigningKeys(
  opts: CommonOptions,
  fn: (keys: SigningKeyStore, audit: Context["audit"]) => Promise<void>,
): Promise<void> {
  const config = opts.config ? loadConfigFile(opts.config) : undefined;
  const location =
    opts.store ?? process.env.MCPGATE_STORE ?? (config ? signingKeyLocation(config) : DEFAULT_KEY_STORE);
  const secret = process.env[SIGNING_KEY_SECRET_ENV];
  const keys = await openSigningKeyStore(location, {
    ...(config?.identity?.alg ? { alg: config.identity.alg } : {}),
    ...(secret ? { secret } : {}),
  });
  const trail = await openCliAudit(opts.audit ?? config?.logging.audit, location);
  try {
    await fn(keys, trail.audit);
  } finally {
    await trail.close();
    await keys.close();
  }
}

function signingKeyJson(k: SigningKeyInfo): Record<string, unknown> {
  return {
    kid: k.kid,
    alg: k.alg,
    state: k.state,
    createdAt: iso(k.createdAt),
    activatesAt: iso(k.activatesAt),
    retiresAt: iso(k.retiresAt),
  };
}

function registerSigningKeyCommands(keys: Command): void {
  usageExit(
    keys
      .command("rotate-signing")
      .description(
        "make a new signing key the one that signs; the old ones stay published for the overlap, then retire",
      )
      .option(
        "--overlap <duration>",
        "how long replaced keys stay published (≥ the longest token lifetime)",
        "24h",
      )
      .option("--publish-ahead <duration>", "publish the new key this long before it signs", "0s")
      .option("--alg <alg>", "ES256 or EdDSA (default: identity.alg, else the store's)")
      .option("--json", "print JSON")
      .action(
        action(
          async (
            opts: { overlap: string; publishAhead: string; alg?: string; json?: boolean },
            cmd: Command,
          ) => {
            const overlapMs = parsePositiveDuration("--overlap", opts.overlap, true);
            const publishAheadMs = parsePositiveDuration("--publish-ahead", opts.publishAhead, true);
            if (opts.alg !== undefined && opts.alg !== "ES256" && opts.alg !== "EdDSA")
              throw new UsageError("--alg must be ES256 or EdDSA");
            await withSigningKeys(common(cmd), async (store, audit) => {
              const r = await store.rotate({
                overlapMs,
                publishAheadMs,
                ...(opts.alg ? { alg: opts.alg as SigningAlg } : {}),
              });
              audit({
                type: "signing_key_rotated",
                other: r.kid,
                detail: {
                  alg: r.alg,
                  activatesAt: iso(r.activatesAt) ?? undefined,
                  retiring: r.retiring.map((x) => x.kid).join(","),
                },
              });
              const out = {
                kid: r.kid,
                alg: r.alg,
                activatesAt: iso(r.activatesAt),
                retiring: r.retiring.map((x) => ({ kid: x.kid, retiresAt: iso(x.retiresAt) })),
              };
              if (opts.json) process.stdout.write(`${JSON.stringify(out)}\n`);
              else {
                process.stdout.write(`New signing key ${r.kid} (${r.alg}) signs from ${out.activatesAt}.\n`);
                for (const x of out.retiring)
                  process.stdout.write(`Key ${x.kid} stays published until ${x.retiresAt}.\n`);
              }
            });
          },
        ),
      ),
  );

  usageExit(
    keys
      .command("list-signing")
      .description("list the signing keys (kid, algorithm, state; never key material)")
      .option("--json", "print JSON")
      .action(
        action(async (opts: { json?: boolean }, cmd: Command) => {
          await withSigningKeys(common(cmd), async (store) => {
            const all = (await store.list()).map(signingKeyJson);
            if (opts.json) process.stdout.write(`${JSON.stringify(all)}\n`);
            else
              for (const k of all)
                process.stdout.write(`${k.kid}  ${k.alg}  ${k.state}  retires ${k.retiresAt ?? "-"}\n`);
          });
        }),
      ),
  );
}
