import type { OAuthRecordStore } from "../stores/oauth-records.js";

/**
 * A secret every instance on one store shares (model "Secret": the cookie and CSRF keys), created
 * by whichever instance comes first. Instances starting at the same moment each make a candidate;
 * the store keeps the first one inserted and every instance returns that one, so no instance signs
 * cookies the others cannot read.
 *
 * @example
 * const { cookieKeys } = await sharedSecret(store, "cookie-keys", async () => ({
 *   cookieKeys: [randomBytes(32).toString("base64url")],
 * }));
 */
export async function sharedSecret<T extends Record<string, unknown>>(
  store: OAuthRecordStore,
  id: string,
  make: () => Promise<T>,
): Promise<T> {
  const found = await store.find("Secret", id);
  if (found) return found as T;
  return (await store.insertIfAbsent("Secret", id, await make())) as T;
}
