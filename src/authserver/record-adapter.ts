import { createHash } from "node:crypto";
import type { OAuthPayload, OAuthRecordStore } from "../stores/oauth-records.js";
import { isSealed, type SigningKeySeal, signingKeySeal } from "../stores/signing-key-seal.js";
import { CLIENT_MODEL } from "./client-expiry.js";
import { fetchLoopbackMetadata, isLoopbackMetadataUrl } from "./loopback-metadata.js";

/** Records that live minutes, kept in Redis when `state.redis` is set (DESIGN.md §9, issue item 5). */
const SHORT_LIVED = new Set([
  "AuthorizationCode",
  "Interaction",
  "Session",
  "ReplayDetection",
  "PushedAuthorizationRequest",
]);

/**
 * Models whose id is itself a bearer credential: whoever holds the id can use the record. They are
 * stored under a digest of the id, and the id is kept out of the stored payload, so whoever reads the
 * database (a backup, a read-only replica, an injection elsewhere) gets no usable token, code or cookie.
 * - RefreshToken, AuthorizationCode, AccessToken (opaque ones), ClientCredentials, DeviceCode,
 *   BackchannelAuthenticationRequest, PreAuthorizedCode: the id is the value a client presents;
 * - RegistrationAccessToken, InitialAccessToken: RFC 7591/7592 bearer tokens (a registration access
 *   token is issued with every registered client, reads its metadata, and never expires);
 * - Session: the id is the `_session` cookie's value (the cookie keys are in the same database);
 * - Interaction: the id is the `_interaction` and `_interaction_resume` cookies' value.
 * Kept under their id: Client (a client_id is public), Grant (its id travels in access tokens as
 * `gid` and is never accepted as a credential; token-verifier.ts looks grants up by it),
 * ReplayDetection (its id is already a digest of a client assertion's jti), PushedAuthorizationRequest
 * (RFC 9126 §7.1: a request_uri is bound to its client; the feature is off).
 */
const HASHED_MODELS: ReadonlySet<string> = new Set([
  "RefreshToken",
  "AuthorizationCode",
  "AccessToken",
  "ClientCredentials",
  "DeviceCode",
  "BackchannelAuthenticationRequest",
  "PreAuthorizedCode",
  "RegistrationAccessToken",
  "InitialAccessToken",
  "Session",
  "Interaction",
]);

/** Payload fields that end with the record's own id: an Interaction's `returnTo` is `…/oauth/auth/<uid>`. */
const ID_SUFFIXED = ["returnTo"] as const;
/** Names, in a stored payload, the fields {@link ID_SUFFIXED} had the id cut from. */
const CUT_MARK = "idCutFrom";

/**
 * The id a record is stored under: the SHA-256 digest (hex) of oidc-provider's id for the models whose
 * id is a credential, the id itself for the others. No salt and no slow KDF: these ids are 43
 * characters of CSPRNG output (256 bits, oidc-provider's nanoid), so a digest cannot be reversed by
 * guessing as a password's can. Hex (64 characters) also tells hashed rows from rows stored before
 * hashing (43 characters) at a glance.
 *
 * @example storedIdOf("RefreshToken", refreshToken) // "9f86d081…" (64 hex characters)
 */
export function storedIdOf(model: string, id: string): string {
  return HASHED_MODELS.has(model) ? createHash("sha256").update(id).digest("hex") : id;
}

/** The payload as stored for a hashed model: no `jti`, no id inside `returnTo`, no session cookie. */
function toStored(id: string, payload: OAuthPayload): OAuthPayload {
  const { jti: _jti, ...stored } = payload;
  const cut = ID_SUFFIXED.filter((f) => typeof stored[f] === "string" && (stored[f] as string).endsWith(id));
  for (const f of cut) stored[f] = (stored[f] as string).slice(0, -id.length);
  if (cut.length > 0) stored[CUT_MARK] = cut;
  // oidc-provider copies the browser's Session id (its session cookie) into every Interaction as
  // `session.cookie`, for applications to read; neither it nor interactions.ts reads it back.
  const session = stored.session as Record<string, unknown> | undefined;
  if (session && typeof session === "object" && "cookie" in session) {
    const { cookie: _cookie, ...rest } = session;
    stored.session = rest;
  }
  return stored;
}

/** The payload oidc-provider stored, given back the id it asked for (undefined: found by uid). */
function fromStored(id: string | undefined, stored: OAuthPayload): OAuthPayload {
  const { [CUT_MARK]: cut, ...payload } = stored;
  if (id === undefined) return payload;
  for (const f of Array.isArray(cut) ? cut : []) {
    if (typeof payload[f] === "string") payload[f] = `${payload[f]}${id}`;
  }
  return { ...payload, jti: id };
}

/**
 * One model's records in a store, ids of credentials hashed ({@link storedIdOf}). Records written
 * under the raw id before hashing (an upgrade with live refresh tokens and sessions) are still read.
 */
class ModelRecords {
  readonly #hashed: boolean;
  constructor(
    readonly model: string,
    readonly store: OAuthRecordStore,
  ) {
    this.#hashed = HASHED_MODELS.has(model);
  }

  upsert(id: string, payload: OAuthPayload, expiresIn?: number): Promise<void> {
    const stored = this.#hashed ? toStored(id, payload) : payload;
    return this.store.upsert(this.model, storedIdOf(this.model, id), stored, expiresIn);
  }

  async find(id: string): Promise<OAuthPayload | undefined> {
    if (!this.#hashed) return this.store.find(this.model, id);
    const found = await this.store.find(this.model, storedIdOf(this.model, id));
    if (found) return fromStored(id, found);
    // LEGACY (records stored by raw id before hashing). Only a record that names this id as its
    // `jti` is one: a hashed record has no `jti`, so its digest, read from a database, is no token.
    // Remove this fallback (and the raw-id halves of consume and destroy) once every instance has
    // run this version longer than the longest-lived of these records: authServer.tokens.refreshTtl
    // and consent.remember (30 days by default). Registration access tokens never expire; a client
    // registered before this version then loses only RFC 7592 reads of its own registration.
    const legacy = await this.store.find(this.model, id);
    return legacy?.jti === id ? legacy : undefined;
  }

  // A Session found by uid comes back without its id (the cookie value is not stored): oidc-provider
  // only reads such a session (provider.js interaction lookup, token_helpers.js session binding).
  async findByUid(uid: string): Promise<OAuthPayload | undefined> {
    const found = await this.store.findByUid(this.model, uid);
    return found && this.#hashed && found.jti === undefined ? fromStored(undefined, found) : found;
  }

  async consume(id: string): Promise<void> {
    await this.store.consume(this.model, storedIdOf(this.model, id));
    if (this.#hashed) await this.store.consume(this.model, id); // LEGACY: see find
  }

  async destroy(id: string): Promise<void> {
    await this.store.destroy(this.model, storedIdOf(this.model, id));
    if (this.#hashed) await this.store.destroy(this.model, id); // LEGACY: see find
  }
}

/** Models stored with no expiry by oidc-provider that ours give one (`clients.unusedClientTtl`). */
export const EXPIRE_UNLESS_USED: ReadonlySet<string> = new Set([CLIENT_MODEL, "RegistrationAccessToken"]);

/** What {@link adapterFor} needs of the authorization server's settings. */
export interface AdapterSettings {
  store: OAuthRecordStore;
  shortLivedStore?: OAuthRecordStore;
  allowLoopbackMetadataDocuments: boolean;
  /** How long a stored (registered) client is kept unused (client-expiry.ts); absent: for ever. */
  unusedClientTtlSec?: number;
  /** Seals a registered client's `client_secret` at rest when it seals (`MCPGATE_SIGNING_KEY_SECRET`). */
  seal?: SigningKeySeal;
}

/**
 * A confidential client's `client_secret` is what it authenticates with at the token endpoint:
 * sealed at rest when the gateway seals (bound to the client's id, so a sealed secret copied onto
 * another client does not open), opened when oidc-provider reads the client. oidc-provider compares
 * the secret as given, so it cannot be stored as a digest.
 */
function clientSecrets(seal: SigningKeySeal | undefined) {
  const context = (id: string) => `oauth-client:${id}`;
  return {
    toStored(id: string, payload: OAuthPayload): OAuthPayload {
      const secret = payload.client_secret;
      if (!seal?.sealing || typeof secret !== "string" || isSealed(secret)) return payload;
      return { ...payload, client_secret: seal.seal(context(id), secret) };
    },
    fromStored(id: string, stored: OAuthPayload): OAuthPayload {
      const secret = stored.client_secret;
      if (typeof secret !== "string" || !isSealed(secret)) return stored;
      return {
        ...stored,
        client_secret: (seal ?? signingKeySeal(undefined)).open(
          context(id),
          secret,
          `the secret of client ${id}`,
        ),
      };
    },
  };
}

/**
 * The oidc-provider adapter over our record stores: one instance per model name, short-lived models
 * in the short-lived store when there is one, the ids of credentials stored hashed.
 *
 * @example new Provider(issuer, { adapter: adapterFor({ store, allowLoopbackMetadataDocuments: false }) });
 */
export function adapterFor(settings: AdapterSettings) {
  const { store, shortLivedStore, allowLoopbackMetadataDocuments, unusedClientTtlSec } = settings;
  const secrets = clientSecrets(settings.seal);
  return class RecordAdapter {
    readonly #records: ModelRecords;
    readonly #defaultTtl: number | undefined;
    constructor(model: string) {
      this.#records = new ModelRecords(
        model,
        shortLivedStore && SHORT_LIVED.has(model) ? shortLivedStore : store,
      );
      // oidc-provider stores a registered client, and its registration access token (RFC 7592),
      // with no expiry; ours expire unless used, and the token lives no longer than an unused client
      // (else every registration would leave a record for ever).
      this.#defaultTtl = EXPIRE_UNLESS_USED.has(model) ? unusedClientTtlSec : undefined;
    }
    upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
      const stored = this.#records.model === CLIENT_MODEL ? secrets.toStored(id, payload) : payload;
      return this.#records.upsert(id, stored, expiresIn ?? this.#defaultTtl);
    }
    async find(id: string) {
      const found = await this.#records.find(id);
      if (this.#records.model !== CLIENT_MODEL) return found;
      if (found) return secrets.fromStored(id, found);
      // Development only: an http CIMD client_id on loopback (oidc-provider takes https only).
      if (allowLoopbackMetadataDocuments && isLoopbackMetadataUrl(id)) return fetchLoopbackMetadata(id);
      return undefined;
    }
    findByUid(uid: string) {
      return this.#records.findByUid(uid);
    }
    async findByUserCode() {
      return undefined;
    }
    consume(id: string) {
      return this.#records.consume(id);
    }
    destroy(id: string) {
      return this.#records.destroy(id);
    }
    revokeByGrantId(grantId: string) {
      return this.#records.store.revokeByGrantId(grantId);
    }
  };
}
