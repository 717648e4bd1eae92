import type { CredentialVerifier } from "../../src/authn/verifier.js";

/** Two callers with distinct principals, `key:alice` and `key:bob` (tokens are test-only). */
export const KEYS = { alice: "alice-test-key-0123456789", bob: "bob-test-key-0123456789ab" } as const;

/**
 * A verifier that knows the tokens of `keys`: each name is its own principal (`key:<name>`), with
 * no scopes.
 *
 * @example createGate({ verifiers: [callersFrom({ carol: "carol-token" })], publicUrl })
 */
export function callersFrom(keys: Readonly<Record<string, string>>): CredentialVerifier {
  return {
    kind: "api_key",
    accepts: () => true,
    async verify(token) {
      const who = Object.entries(keys).find(([, k]) => k === token)?.[0];
      if (!who) return { ok: false, reason: "invalid" };
      return {
        ok: true,
        identity: {
          principal: `key:${who}`,
          kind: "api_key",
          subject: who,
          scopes: [],
          displayPrefix: `k_${who}`,
        },
      };
    },
  };
}

/**
 * A verifier that knows the two {@link KEYS}: each is its own principal, with no scopes.
 *
 * @example createGate({ verifiers: [twoCallers], publicUrl })
 */
export const twoCallers: CredentialVerifier = callersFrom(KEYS);
