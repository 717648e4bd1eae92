import { createHash, timingSafeEqual } from "node:crypto";
import { McpGateError } from "../core/errors.js";
import type { Identity } from "../core/identity.js";
import type { CredentialVerifier, VerifyResult } from "./verifier.js";

export interface StaticKeyOptions {
  /** The shared secret (e.g. from MCP_API_KEY). At least 16 characters. */
  key: string;
  /** Scopes granted to the static key. Default: none (policy rules then decide). */
  scopes?: string[];
}

function sha256(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/**
 * A fingerprint that identifies the static key in logs without revealing any of its characters:
 * the first 8 hex digits of SHA-256 over a domain-separated input.
 */
export function staticKeyFingerprint(key: string): string {
  return createHash("sha256")
    .update(`mcpgate-static-key-fingerprint:${key}`, "utf8")
    .digest("hex")
    .slice(0, 8);
}

/**
 * Verify a single static key: SHA-256 on both sides, then `timingSafeEqual` (equal-length digests,
 * so neither the length nor any prefix of the key leaks through timing).
 *
 * @example
 * const verifier = createStaticKeyVerifier({ key: process.env.MCP_API_KEY! });
 */
export function createStaticKeyVerifier(options: StaticKeyOptions): CredentialVerifier {
  if (typeof options?.key !== "string" || options.key.length < 16) {
    throw new McpGateError("ERR_INVALID_OPTION", "staticKey.key must be a string of at least 16 characters");
  }
  const expected = sha256(options.key);
  const fingerprint = staticKeyFingerprint(options.key);
  const identity: Identity = Object.freeze({
    principal: "static",
    kind: "static_key",
    subject: "static",
    scopes: Object.freeze([...(options.scopes ?? [])]) as string[],
    displayPrefix: `static:${fingerprint}`,
  });
  return {
    kind: "static_key",
    accepts: () => true,
    async verify(token: string): Promise<VerifyResult> {
      const presented = sha256(token);
      if (timingSafeEqual(presented, expected))
        return { ok: true, identity: { ...identity, scopes: [...identity.scopes] } };
      return { ok: false, reason: "invalid" };
    },
  };
}
