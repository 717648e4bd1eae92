import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import { McpGateError } from "../core/errors.js";
import { parseKeyStoreLocation } from "./open-key-store.js";
import { isSealed, SIGNING_KEY_SECRET_ENV, type SigningKeySeal, signingKeySeal } from "./signing-key-seal.js";

/**
 * The gateway's own signing keys (DESIGN.md §9): identity assertions for upstreams and, with
 * `authServer`, the access tokens the gateway issues. One key set per key store, so every gateway
 * instance on the same SQLite file or PostgreSQL schema signs with the same key and publishes the
 * same JWKS. Keys are created on first start and rotated with an overlap: after `rotate()` the old
 * key stops signing but stays published until `retiresAt`, so tokens it signed keep verifying
 * (RFC 7517 §4.5 `kid` selects the key). A new key may be published ahead of its activation, so
 * verifiers that cache the JWKS (jose's remote JWKS refetches at most every 30 s) learn it first.
 *
 * Private keys are stored in the same database as the API-key hashes. With a secret
 * (`MCPGATE_SIGNING_KEY_SECRET`, stores/signing-key-seal.ts) they are sealed (AES-256-GCM): reading
 * the database is then not enough to sign. Without one they are plain JWK text, and whoever can read
 * the database can sign.
 */

/** The algorithms the gateway signs with (RFC 7518 ES256 on P-256, RFC 8037 EdDSA on Ed25519). */
export type SigningAlg = "ES256" | "EdDSA";

/** The key a signer uses now. `privateJwk` carries `kid` and `alg`; never log it. */
export interface ActiveSigningKey {
  kid: string;
  alg: SigningAlg;
  privateJwk: JWK;
}

/** What `current()` returns: the key to sign with, and the public keys to publish (active first). */
export interface SigningKeySet {
  active: ActiveSigningKey;
  /** Public JWKs (`kid`, `alg`, `use: "sig"`): the active key, then pending and overlapping ones. */
  publicJwks: JWK[];
}

/** Metadata of one key (no key material), for `mcpgate keys list-signing` and audits. */
export interface SigningKeyInfo {
  kid: string;
  alg: SigningAlg;
  /** active: signs now · pending: published, signs from `activatesAt` · overlap: published until `retiresAt` · retired. */
  state: "active" | "pending" | "overlap" | "retired";
  createdAt: number;
  activatesAt: number;
  retiresAt?: number;
}

/** Options of `rotate()`. */
export interface RotateSigningKeyOptions {
  /** How long the replaced key stays published after the new one activates. Must cover the longest token lifetime. */
  overlapMs: number;
  /** Publish the new key this long before it starts signing (default 0: at once). */
  publishAheadMs?: number;
  /** Algorithm of the new key (default: the store's `alg`). */
  alg?: SigningAlg;
}

/** What `rotate()` did. */
export interface RotateSigningKeyResult {
  kid: string;
  alg: SigningAlg;
  activatesAt: number;
  /** The keys that stop signing, and until when they stay published. */
  retiring: Array<{ kid: string; retiresAt: number }>;
}

/**
 * A signing-key store. `init()` creates the table and, if no key can sign, the first key
 * (atomically: instances starting together agree on one key). All times are epoch milliseconds.
 *
 * @example
 * const keys = await openSigningKeyStore("sqlite:./mcpgate.db");
 * const { active, publicJwks } = await keys.current();
 * await keys.rotate({ overlapMs: 24 * 3600_000 });
 */
export interface SigningKeyStore {
  readonly kind: "memory" | "sqlite" | "postgres";
  init(): Promise<void>;
  close(): Promise<void>;
  /** The key to sign with now and the JWKS to publish. Creates a key if none can sign. */
  current(): Promise<SigningKeySet>;
  /** Make a new key the signing key; the others stay published for `overlapMs`, then retire. */
  rotate(options: RotateSigningKeyOptions): Promise<RotateSigningKeyResult>;
  /** Every key still stored, newest first, without key material. */
  list(): Promise<SigningKeyInfo[]>;
}

/** One stored key. Internal to `stores/`: the SQL stores use these column names. */
export interface SigningKeyRow {
  kid: string;
  alg: string;
  private_jwk: string;
  public_jwk: string;
  created_at: number | string;
  activates_at: number | string;
  retires_at: number | string | null;
}

/** A change computed under the store's lock. Internal to `stores/`. */
export interface SigningKeyChange {
  insert?: SigningKeyRow[];
  retire?: Array<{ kid: string; at: number }>;
  remove?: string[];
}

/**
 * What a backend provides: read all rows, and apply a change computed from the rows read under one
 * lock/transaction (so two instances rotating or creating at once never both win). Internal.
 */
export interface SigningKeyBackend {
  readonly kind: SigningKeyStore["kind"];
  init(): Promise<void>;
  close(): Promise<void>;
  rows(): Promise<SigningKeyRow[]>;
  mutate<T>(fn: (rows: SigningKeyRow[]) => { change: SigningKeyChange; result: T }): Promise<T>;
}

/**
 * A driver failure as `ERR_STORE_UNAVAILABLE`: the driver's code and the first line of its message
 * (pg never echoes the password). Internal to `stores/`.
 */
export function signingStoreUnavailable(engine: string, err: unknown): McpGateError {
  if (err instanceof McpGateError) return err;
  const code = (err as { code?: string })?.code ?? "error";
  const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
  return new McpGateError("ERR_STORE_UNAVAILABLE", `${engine} signing-key store: ${code}: ${msg}`, {
    cause: err,
  });
}

const ALGS: ReadonlySet<string> = new Set(["ES256", "EdDSA"]);

function assertAlg(alg: unknown, what: string): asserts alg is SigningAlg {
  if (typeof alg !== "string" || !ALGS.has(alg))
    throw new McpGateError("ERR_INVALID_OPTION", `${what}: alg must be ES256 or EdDSA`);
}

/**
 * Generate a key pair as stored rows expect: `kid` is the RFC 7638 JWK thumbprint (SHA-256).
 *
 * @example const row = await generateSigningKeyRow("ES256", Date.now(), Date.now());
 */
export async function generateSigningKeyRow(
  alg: SigningAlg,
  createdAt: number,
  activatesAt: number,
): Promise<SigningKeyRow> {
  const { publicKey, privateKey } = await generateKeyPair(
    alg,
    alg === "EdDSA" ? { crv: "Ed25519", extractable: true } : { extractable: true },
  );
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, "sha256");
  const publicJwk: JWK = { ...pub, kid, alg, use: "sig" };
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg, use: "sig" };
  return {
    kid,
    alg,
    private_jwk: JSON.stringify(privateJwk),
    public_jwk: JSON.stringify(publicJwk),
    created_at: createdAt,
    activates_at: activatesAt,
    retires_at: null,
  };
}

const num = (v: number | string | null): number | undefined => (v === null ? undefined : Number(v));

const NO_SEAL = signingKeySeal(undefined);

function stateOf(row: SigningKeyRow, activeKid: string | undefined, now: number): SigningKeyInfo["state"] {
  const retiresAt = num(row.retires_at);
  if (retiresAt !== undefined && retiresAt <= now) return "retired";
  if (row.kid === activeKid) return "active";
  return Number(row.activates_at) > now ? "pending" : "overlap";
}

// Newest activation first; ties (two instances creating at once is prevented by the lock, but a
// copied database could have them) broken by creation time, then kid, so every instance agrees.
function byActivationDesc(a: SigningKeyRow, b: SigningKeyRow): number {
  return (
    Number(b.activates_at) - Number(a.activates_at) ||
    Number(b.created_at) - Number(a.created_at) ||
    (a.kid < b.kid ? 1 : a.kid > b.kid ? -1 : 0)
  );
}

// The signing key: the latest-activated key that is activated and not retired.
function activeRow(rows: SigningKeyRow[], now: number): SigningKeyRow | undefined {
  const canSign = (r: SigningKeyRow) =>
    ALGS.has(r.alg) && Number(r.activates_at) <= now && stateOf(r, undefined, now) !== "retired";
  return rows.filter(canSign).sort(byActivationDesc)[0];
}

/**
 * Pick the signing key and the published set from stored rows at `now`. Exported for the tests;
 * internal to `stores/`.
 */
export function selectSigningKeys(
  rows: SigningKeyRow[],
  now: number,
  seal: SigningKeySeal = NO_SEAL,
): SigningKeySet | undefined {
  const active = activeRow(rows, now);
  if (!active) return undefined;
  const published = rows
    .filter((r) => ALGS.has(r.alg) && r.kid !== active.kid && stateOf(r, active.kid, now) !== "retired")
    .sort(byActivationDesc);
  return {
    active: {
      kid: active.kid,
      alg: active.alg as SigningAlg,
      privateJwk: JSON.parse(seal.open(active.kid, active.private_jwk)) as JWK,
    },
    publicJwks: [active, ...published].map((r) => JSON.parse(r.public_jwk) as JWK),
  };
}

/**
 * Build a `SigningKeyStore` over a backend (memory, SQLite, PostgreSQL). Internal to `stores/`.
 */
export function signingKeyStoreOver(
  backend: SigningKeyBackend,
  options: { alg?: SigningAlg; now?: () => number; secret?: string } = {},
): SigningKeyStore {
  const alg = options.alg ?? "ES256";
  assertAlg(alg, "signing key store");
  const now = options.now ?? Date.now;
  const seal = signingKeySeal(options.secret);
  const sealed = (row: SigningKeyRow): SigningKeyRow => ({
    ...row,
    private_jwk: seal.seal(row.kid, row.private_jwk),
  });
  // A store whose keys are sealed gets no plain key added by a process without the secret.
  const refuseMixing = (rows: SigningKeyRow[]) => {
    if (!seal.sealing && rows.some((r) => isSealed(r.private_jwk)))
      throw new McpGateError(
        "ERR_INVALID_OPTION",
        `the signing keys in this store are sealed: set ${SIGNING_KEY_SECRET_ENV} to the secret they were sealed with`,
      );
  };

  async function ensureActive(): Promise<SigningKeySet> {
    const t = now();
    const candidate = sealed(await generateSigningKeyRow(alg, t, t));
    return backend.mutate((rows) => {
      const existing = selectSigningKeys(rows, now(), seal);
      if (existing) return { change: {}, result: existing };
      refuseMixing(rows);
      const all = [...rows, candidate];
      return { change: { insert: [candidate] }, result: selectSigningKeys(all, now(), seal)! };
    });
  }

  return {
    kind: backend.kind,
    async init() {
      await backend.init();
      // With a secret, keys stored before it was set are sealed now (same kid, same dates).
      if (seal.sealing)
        await backend.mutate((rows) => {
          const plain = rows.filter((r) => !isSealed(r.private_jwk));
          return {
            change: { remove: plain.map((r) => r.kid), insert: plain.map(sealed) },
            result: undefined,
          };
        });
      await ensureActive();
    },
    close: () => backend.close(),
    async current() {
      return selectSigningKeys(await backend.rows(), now(), seal) ?? (await ensureActive());
    },
    async rotate(opts) {
      const overlapMs = opts?.overlapMs;
      if (typeof overlapMs !== "number" || !Number.isFinite(overlapMs) || overlapMs < 0)
        throw new McpGateError("ERR_INVALID_OPTION", "rotate signing key: overlapMs must be a number ≥ 0");
      const ahead = opts.publishAheadMs ?? 0;
      if (!Number.isFinite(ahead) || ahead < 0)
        throw new McpGateError("ERR_INVALID_OPTION", "rotate signing key: publishAheadMs must be ≥ 0");
      const nextAlg = opts.alg ?? alg;
      assertAlg(nextAlg, "rotate signing key");
      const t = now();
      const generated = sealed(await generateSigningKeyRow(nextAlg, t, t + ahead));
      return backend.mutate((rows) => {
        refuseMixing(rows);
        const at = now();
        // The newest rotation must win the "latest activation" order even within one millisecond.
        const latest = Math.max(-1, ...rows.map((r) => Number(r.activates_at)));
        const activatesAt = Math.max(at + ahead, latest + 1);
        const next = { ...generated, activates_at: activatesAt };
        const retire: Array<{ kid: string; at: number }> = [];
        const remove: string[] = [];
        for (const r of rows) {
          const retiresAt = num(r.retires_at);
          if (retiresAt !== undefined && retiresAt <= at) remove.push(r.kid);
          else if (retiresAt === undefined || retiresAt > activatesAt + overlapMs)
            retire.push({ kid: r.kid, at: activatesAt + overlapMs });
        }
        return {
          change: { insert: [next], retire, remove },
          result: {
            kid: next.kid,
            alg: nextAlg,
            activatesAt,
            retiring: retire.map((x) => ({ kid: x.kid, retiresAt: x.at })),
          },
        };
      });
    },
    async list() {
      const rows = await backend.rows();
      const t = now();
      const activeKid = activeRow(rows, t)?.kid;
      return [...rows].sort(byActivationDesc).map((r) => {
        const info: SigningKeyInfo = {
          kid: r.kid,
          alg: r.alg as SigningAlg,
          state: stateOf(r, activeKid, t),
          createdAt: Number(r.created_at),
          activatesAt: Number(r.activates_at),
        };
        const retiresAt = num(r.retires_at);
        if (retiresAt !== undefined) info.retiresAt = retiresAt;
        return info;
      });
    },
  };
}

/** Apply a change to an in-memory row list (used by the memory backend). Internal. */
function applyChange(rows: Map<string, SigningKeyRow>, change: SigningKeyChange): void {
  for (const kid of change.remove ?? []) rows.delete(kid);
  for (const { kid, at } of change.retire ?? []) {
    const r = rows.get(kid);
    if (r) rows.set(kid, { ...r, retires_at: at });
  }
  for (const r of change.insert ?? []) rows.set(r.kid, { ...r });
}

/**
 * An in-process signing-key store (`memory:`): for tests and one-process demos. Keys vanish with
 * the process, so assertions signed before a restart stop verifying.
 *
 * @example
 * const keys = createMemorySigningKeyStore({ alg: "EdDSA" });
 * await keys.init();
 */
export function createMemorySigningKeyStore(
  options: { alg?: SigningAlg; now?: () => number; secret?: string } = {},
): SigningKeyStore {
  const rows = new Map<string, SigningKeyRow>();
  let open = false;
  const live = () => {
    if (!open)
      throw new McpGateError("ERR_STORE_UNAVAILABLE", "memory signing-key store is not open (call init())");
  };
  return signingKeyStoreOver(
    {
      kind: "memory",
      async init() {
        open = true;
      },
      async close() {
        open = false;
      },
      async rows() {
        live();
        return [...rows.values()].map((r) => ({ ...r }));
      },
      async mutate(fn) {
        live();
        const { change, result } = fn([...rows.values()].map((r) => ({ ...r })));
        applyChange(rows, change);
        return result;
      },
    },
    options,
  );
}

/** Options of `openSigningKeyStore`. */
export interface OpenSigningKeyStoreOptions {
  /** Algorithm of the first key and of rotations without `alg`. Default ES256. */
  alg?: SigningAlg;
  /**
   * Seal private keys at rest with this secret (at least 32 characters): the gateway and the CLI
   * pass `MCPGATE_SIGNING_KEY_SECRET`. Keys already stored plain are sealed when the store opens;
   * a store with sealed keys cannot be used without it.
   */
  secret?: string;
}

/**
 * Open (and `init()`) the signing-key store at a key-store location (`sqlite:PATH`,
 * `postgres://…[?schema=NAME]`, `memory:`): the same string as `auth.apiKeys.store`, so the signing
 * keys live beside the API keys. The driver is imported only for the scheme used.
 *
 * @example
 * const keys = await openSigningKeyStore(process.env.MCPGATE_STORE ?? "sqlite:./mcpgate.db");
 * try { const { active } = await keys.current(); } finally { await keys.close(); }
 */
export async function openSigningKeyStore(
  location: string,
  options: OpenSigningKeyStoreOptions = {},
): Promise<SigningKeyStore> {
  const loc = parseKeyStoreLocation(location);
  const alg = options.alg ?? "ES256";
  assertAlg(alg, "signing key store");
  const secret = options.secret ? { secret: options.secret } : {};
  let store: SigningKeyStore;
  if (loc.kind === "memory") {
    store = createMemorySigningKeyStore({ alg, ...secret });
  } else if (loc.kind === "sqlite") {
    const { createSqliteSigningKeyStore } = await import("./signing-keys-sqlite.js");
    store = createSqliteSigningKeyStore({ path: loc.path, alg, ...secret });
  } else {
    const { createPostgresSigningKeyStore } = await import("./signing-keys-postgres.js");
    store = createPostgresSigningKeyStore({
      connectionString: loc.connectionString,
      alg,
      ...secret,
      ...(loc.schema === undefined ? {} : { schema: loc.schema }),
    });
  }
  try {
    await store.init();
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  return store;
}
