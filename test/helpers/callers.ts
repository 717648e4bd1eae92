import type { CredentialVerifier } from "../../src/authn/verifier.js";

/** Two callers with distinct principals, `key:alice` and `key:bob` (tokens are test-only). */
export const KEYS = { alice: "alice-test-key-0123456789", bob: "bob-test-key-0123456789ab" } as const;

/**
 * A verifier that knows the two {@link KEYS}: each is its own principal, with no scopes.
 *
 * @example createGate({ verifiers: [twoCallers], publicUrl })
 */
export const twoCallers: CredentialVerifier = {
  kind: "api_key",
  accepts: () => true,
  async verify(token) {
    const who = Object.entries(KEYS).find(([, k]) => k === token)?.[0];
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
