import { McpGateError } from "../core/errors.js";
import type { OAuthPayload, OAuthRecordStore } from "../stores/oauth-records.js";
import {
  isSealed,
  SIGNING_KEY_SECRET_ENV,
  type SigningKeySeal,
  signingKeySeal,
} from "../stores/signing-key-seal.js";

/** The model shared secrets are stored under. */
const MODEL = "Secret";

/** What a sealed secret is bound to (the seal's additional data): a copy under another id does not open. */
const boundTo = (id: string) => `oauth-record:${MODEL}:${id}`;

/** The record as stored: sealed (`{ sealed: "sealed:v1:…" }`) when the seal seals, else the content itself. */
function toStored(id: string, content: OAuthPayload, seal: SigningKeySeal): OAuthPayload {
  return seal.sealing ? { sealed: seal.seal(boundTo(id), JSON.stringify(content)) } : content;
}

/** The sealed text of a stored record; undefined when it is stored in clear. */
const sealedText = (stored: OAuthPayload): string | undefined =>
  typeof stored.sealed === "string" && isSealed(stored.sealed) ? stored.sealed : undefined;

/** The content of a stored record, sealed or (written before sealing, or without a secret) clear. */
function fromStored(id: string, stored: OAuthPayload, seal: SigningKeySeal): OAuthPayload {
  const sealed = sealedText(stored);
  if (sealed === undefined) return stored;
  const what = `the authorization server's shared secret "${id}"`;
  if (!seal.sealing) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      `${what} is sealed: set ${SIGNING_KEY_SECRET_ENV} to the secret it was sealed with`,
    );
  }
  try {
    return JSON.parse(
      seal.open(boundTo(id), sealed, `the authorization server's "${id}" record`),
    ) as OAuthPayload;
  } catch (err) {
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      `${what} does not open: ${SIGNING_KEY_SECRET_ENV} is not the secret it was sealed with`,
      { cause: err },
    );
  }
}

/**
 * A secret every instance on one store shares (model "Secret": the cookie and CSRF keys), created
 * by whichever instance comes first. Instances starting at the same moment each make a candidate;
 * the store keeps the first one inserted and every instance returns that one, so no instance signs
 * cookies the others cannot read.
 *
 * With a sealing `seal` (`MCPGATE_SIGNING_KEY_SECRET`, as for the private signing keys) the record
 * is stored sealed, so a read of the database yields no key to forge interaction cookies with. A
 * record stored in clear before is sealed in place, keys unchanged: signed-in browsers and flows
 * under way keep working, and the database holds no clear copy from then on.
 *
 * @example
 * const { cookieKeys } = await sharedSecret(store, "cookie-keys", async () => ({
 *   cookieKeys: [randomBytes(32).toString("base64url")],
 * }), signingKeySeal(process.env.MCPGATE_SIGNING_KEY_SECRET));
 */
export async function sharedSecret<T extends Record<string, unknown>>(
  store: OAuthRecordStore,
  id: string,
  make: () => Promise<T>,
  seal: SigningKeySeal = signingKeySeal(undefined),
): Promise<T> {
  const found = await store.find(MODEL, id);
  if (found) {
    const content = fromStored(id, found, seal);
    if (seal.sealing && sealedText(found) === undefined) {
      await store.upsert(MODEL, id, toStored(id, content, seal));
    }
    return content as T;
  }
  const stored = await store.insertIfAbsent(MODEL, id, toStored(id, await make(), seal));
  return fromStored(id, stored, seal) as T;
}
