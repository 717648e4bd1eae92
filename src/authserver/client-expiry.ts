import type { default as Provider, ProviderContext } from "oidc-provider";
import type { OAuthRecordStore } from "../stores/oauth-records.js";

/**
 * Dynamically registered clients (RFC 7591) expire when unused (`authServer.clients.unusedClientTtl`):
 * registrations are capped (`maxRegistered`), and a cap filled once by clients nobody uses must not
 * lock every later client out for good. A stored client is kept `unusedClientTtlSec` from its
 * registration, and again from each use that proves a person signed in through it: an authorization
 * request answered with a code, or a token issued to it. An authorization request alone proves
 * nothing (anyone can send one for any client_id, and could so keep a filled cap filled). Clients
 * known by their metadata document are not stored, so nothing here touches them.
 */

/** The oidc-provider model of clients. */
export const CLIENT_MODEL = "Client";

/**
 * Keep each stored client `ttlSec` longer whenever it gets a code or a token. The extension is
 * written before the answer leaves; a store failure then costs the client at most its extension,
 * never the tokens it was just issued.
 *
 * @example extendClientsOnUse(provider, store, 30 * 86_400);
 */
export function extendClientsOnUse(provider: Provider, store: OAuthRecordStore, ttlSec: number): void {
  // The provider reports success by events it emits with the request's context, which the
  // middleware below sees again once the route has answered.
  const used = new WeakSet<object>();
  const mark = (ctx: unknown) => {
    if (ctx !== null && typeof ctx === "object") used.add(ctx);
  };
  provider.on("authorization.success", mark);
  provider.on("grant.success", mark);
  provider.use(async (ctx: ProviderContext, next: () => Promise<void>) => {
    await next();
    const clientId = ctx.oidc?.client?.clientId;
    if (!used.has(ctx) || !clientId) return;
    await store.extend(CLIENT_MODEL, clientId, ttlSec).catch(() => {});
  });
}
