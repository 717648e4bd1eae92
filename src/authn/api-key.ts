import { createHash, createHmac, randomBytes } from "node:crypto";

/**
 * The stored-API-key format (DESIGN.md §5): `mcpg_<id>_<secret>`.
 *
 * - `mcpg_` is a fixed, greppable prefix so secret scanners (and people) recognise a leaked key.
 * - `<id>` is 8 base62 characters: the public lookup key (the display prefix is `mcpg_<id>`).
 * - `<secret>` is 32 base62 characters from the CSPRNG (≈190 bits) followed by a 6-character base62
 *   checksum over everything before it (≈35.7 bits of SHA-256), so a typo or a truncated paste is
 *   refused without a store round trip, and random `mcpg_` strings never reach the database.
 *
 * Only a digest of `<secret>` is ever stored (`hashSecret`).
 */

export const API_KEY_PREFIX = "mcpg_";
export const KEY_ID_LENGTH = 8;
/** Random base62 characters in a generated secret (before the checksum). */
export const SECRET_RANDOM_LENGTH = 32;
export const CHECKSUM_LENGTH = 6;
/** Longest secret part we accept when parsing (leaves room for longer secrets later; bounds hashing work). */
const MAX_SECRET_LENGTH = 128;

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BASE62_RE = /^[0-9A-Za-z]+$/;
const KEY_RE = new RegExp(
  `^${API_KEY_PREFIX}([0-9A-Za-z]{${KEY_ID_LENGTH}})_([0-9A-Za-z]{${SECRET_RANDOM_LENGTH + CHECKSUM_LENGTH},${MAX_SECRET_LENGTH}})$`,
);
const CHECKSUM_SPACE = 62 ** CHECKSUM_LENGTH;

/** The parts of a well-formed key. `secret` includes the checksum; it is what `hashSecret` digests. */
export interface ParsedApiKey {
  id: string;
  secret: string;
  /** `mcpg_<id>`: safe to log and show. */
  displayPrefix: string;
}

export type ParseApiKeyResult =
  | ({ ok: true } & ParsedApiKey)
  | { ok: false; reason: "malformed" | "bad_checksum" };

/**
 * Uniform base62 characters from the CSPRNG. Rejection sampling (bytes ≥ 248 are discarded) keeps
 * every character equally likely; `byte % 62` alone would favour the first 8 symbols.
 */
function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    const bytes = randomBytes(length * 2);
    for (const b of bytes) {
      if (b < 248) out += BASE62[b % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

function checksumOf(body: string): string {
  const digest = createHash("sha256").update(`mcpgate-key-checksum:${body}`, "utf8").digest();
  // 48 bits fit in a double exactly; reduced mod 62^6 (the bias is below 2^-12 and irrelevant here).
  let n = digest.readUIntBE(0, 6) % CHECKSUM_SPACE;
  let out = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = BASE62[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

/**
 * A new random key id (8 base62 characters).
 *
 * @example generateKeyId() // "7Hq2xK9a"
 */
export function generateKeyId(): string {
  return randomBase62(KEY_ID_LENGTH);
}

/**
 * Generate a new key. The full `key` is shown to its owner once and never stored.
 *
 * @example
 * const { id, key, secret } = generateApiKey();
 * await store.create({ id, hash: hashSecret(secret, pepper), ... });
 */
export function generateApiKey(id: string = generateKeyId()): {
  id: string;
  key: string;
  secret: string;
  displayPrefix: string;
} {
  if (id.length !== KEY_ID_LENGTH || !BASE62_RE.test(id)) {
    throw new TypeError(`generateApiKey: id must be ${KEY_ID_LENGTH} base62 characters`);
  }
  const random = randomBase62(SECRET_RANDOM_LENGTH);
  const secret = random + checksumOf(`${API_KEY_PREFIX}${id}_${random}`);
  return { id, key: `${API_KEY_PREFIX}${id}_${secret}`, secret, displayPrefix: displayPrefixOf(id) };
}

/**
 * Split and checksum-verify a presented key. Never throws: anything that is not a well-formed key
 * is `{ ok: false }`. `bad_checksum` means "looks like a key, but a character is wrong or missing".
 *
 * @example
 * const parsed = parseApiKey(token);
 * if (!parsed.ok) return { ok: false, reason: parsed.reason };
 */
export function parseApiKey(value: unknown): ParseApiKeyResult {
  if (
    typeof value !== "string" ||
    value.length > API_KEY_PREFIX.length + KEY_ID_LENGTH + 1 + MAX_SECRET_LENGTH
  ) {
    return { ok: false, reason: "malformed" };
  }
  const m = KEY_RE.exec(value);
  if (!m) return { ok: false, reason: "malformed" };
  const id = m[1]!;
  const secret = m[2]!;
  const body = secret.slice(0, -CHECKSUM_LENGTH);
  if (checksumOf(`${API_KEY_PREFIX}${id}_${body}`) !== secret.slice(-CHECKSUM_LENGTH)) {
    return { ok: false, reason: "bad_checksum" };
  }
  return { ok: true, id, secret, displayPrefix: displayPrefixOf(id) };
}

/**
 * Cheap shape test (prefix only) used by the verifier's `accepts`.
 *
 * @example looksLikeApiKey("mcpg_7Hq2xK9a_…") // true
 */
export function looksLikeApiKey(token: string): boolean {
  return token.startsWith(API_KEY_PREFIX);
}

/**
 * True for a syntactically valid key id (8 base62 characters).
 *
 * @example isKeyId("7Hq2xK9a") // true
 */
export function isKeyId(value: string): boolean {
  return value.length === KEY_ID_LENGTH && BASE62_RE.test(value);
}

/**
 * The display prefix of a key id: `mcpg_<id>`. Safe to log.
 *
 * @example displayPrefixOf("7Hq2xK9a") // "mcpg_7Hq2xK9a"
 */
export function displayPrefixOf(id: string): string {
  return `${API_KEY_PREFIX}${id}`;
}

/**
 * The stored digest of a secret, lowercase hex: SHA-256, or HMAC-SHA256 keyed with a server-side
 * pepper (so a stolen database alone is not enough to test guesses offline). The secret has
 * ≈190 bits of entropy, so a fast hash is appropriate; a password KDF would only slow verification.
 *
 * @example hashSecret(parsed.secret, process.env.MCPGATE_KEY_PEPPER)
 */
export function hashSecret(secret: string, pepper?: string): string {
  if (pepper !== undefined && pepper !== "") {
    return createHmac("sha256", pepper).update(secret, "utf8").digest("hex");
  }
  return createHash("sha256").update(secret, "utf8").digest("hex");
}
