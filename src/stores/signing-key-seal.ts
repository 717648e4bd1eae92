import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { McpGateError } from "../core/errors.js";

/**
 * Private signing keys sealed at rest (`MCPGATE_SIGNING_KEY_SECRET`): AES-256-GCM under a key
 * derived from the secret with HKDF-SHA-256, the key's `kid` bound as additional data (a sealed
 * key copied onto another row does not open). Stored as `sealed:v1:<iv>:<ciphertext+tag>`
 * (base64url). Without a secret, keys are stored as plain JWK text, as before.
 */

const PREFIX = "sealed:v1:";
const MIN_SECRET = 32;

/** The environment variable the gateway and the CLI read the secret from. */
export const SIGNING_KEY_SECRET_ENV = "MCPGATE_SIGNING_KEY_SECRET";

/** Seals and opens the `private_jwk` column of one store. */
export interface SigningKeySeal {
  /** True when keys are sealed on write. */
  readonly sealing: boolean;
  seal(kid: string, privateJwk: string): string;
  /**
   * The text of a stored value (sealed or plain). Throws a clear error without the right secret,
   * naming what does not open (`label`, default "signing key <kid>").
   */
  open(kid: string, stored: string, label?: string): string;
}

/** Is this stored value sealed? */
export const isSealed = (stored: string): boolean => stored.startsWith(PREFIX);

/**
 * The seal for `secret` (undefined or empty: no sealing; a sealed key then cannot be opened).
 *
 * @example const seal = signingKeySeal(process.env.MCPGATE_SIGNING_KEY_SECRET);
 */
export function signingKeySeal(secret: string | undefined): SigningKeySeal {
  if (secret !== undefined && secret !== "" && secret.length < MIN_SECRET) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      `${SIGNING_KEY_SECRET_ENV} must be at least ${MIN_SECRET} characters (e.g. openssl rand -base64 32)`,
    );
  }
  const key = secret
    ? Buffer.from(hkdfSync("sha256", secret, "mcpgate", "mcpgate signing keys v1", 32))
    : undefined;
  return {
    sealing: key !== undefined,
    seal(kid, privateJwk) {
      if (!key) return privateJwk;
      const iv = randomBytes(12);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      cipher.setAAD(Buffer.from(kid, "utf8"));
      const body = Buffer.concat([cipher.update(privateJwk, "utf8"), cipher.final(), cipher.getAuthTag()]);
      return `${PREFIX}${iv.toString("base64url")}:${body.toString("base64url")}`;
    },
    open(kid, stored, label = `signing key ${kid}`) {
      if (!isSealed(stored)) return stored;
      if (!key) {
        throw new McpGateError(
          "ERR_INVALID_OPTION",
          `${label} is sealed: set ${SIGNING_KEY_SECRET_ENV} to the secret it was sealed with`,
        );
      }
      const [ivText, bodyText] = stored.slice(PREFIX.length).split(":");
      const iv = Buffer.from(ivText ?? "", "base64url");
      const body = Buffer.from(bodyText ?? "", "base64url");
      try {
        if (iv.length !== 12 || body.length <= 16) throw new Error("malformed");
        const decipher = createDecipheriv("aes-256-gcm", key, iv);
        decipher.setAAD(Buffer.from(kid, "utf8"));
        decipher.setAuthTag(body.subarray(body.length - 16));
        return Buffer.concat([
          decipher.update(body.subarray(0, body.length - 16)),
          decipher.final(),
        ]).toString("utf8");
      } catch {
        throw new McpGateError(
          "ERR_INVALID_OPTION",
          `${label} does not open: ${SIGNING_KEY_SECRET_ENV} is not the secret it was sealed with`,
        );
      }
    },
  };
}
