import { McpGateError } from "../core/errors.js";
import type { Identity } from "../core/identity.js";
import type { AssertionSigner } from "./assertion-signer.js";
import type { Delegation, ExchangeResult, TokenExchanger } from "./token-exchange.js";

/** How an upstream is told who calls (DESIGN.md §9 `identity.mode`). */
export type IdentityMode = "none" | "assertion" | "token-exchange";

/** Options of {@link createUpstreamIdentity}: one per upstream. */
export interface UpstreamIdentityOptions {
  /** The upstream's name (cache keys, audit). */
  upstream: string;
  mode: IdentityMode;
  /** `aud` of assertions: the upstream URL, `identity.audience`, or `urn:mcpgate:upstream:<name>` for stdio. */
  audience: string;
  /** RFC 8707 `resource` of exchanged tokens: the upstream URL. Default `audience`. */
  resource?: string;
  /** The request header that carries the credential. Default `authorization` (as `Bearer …`). */
  header?: string;
  /** Required for `assertion`, and for `token-exchange` with `forKeys: assertion`. */
  signer?: AssertionSigner;
  /** Required for `token-exchange`: one client, or one per caller issuer (token endpoint discovered per issuer). */
  exchanger?: TokenExchanger | ((identity: Identity) => TokenExchanger | undefined);
  /** `token-exchange` only: what API-key and static-key callers get. Default `assertion`. */
  forKeys?: "assertion" | "refuse";
  /** RFC 8693 `audience` parameter for exchanges, when the issuer wants one. */
  exchangeAudience?: string;
}

/** The per-request input: the verified caller, its raw bearer token (token-exchange only), the session. */
export interface UpstreamCredentialRequest {
  identity: Identity;
  /** The caller's access token; used only as an exchange's `subject_token`, never forwarded. */
  token?: string;
  sessionId?: string;
}

/** What the audit trail records about how the upstream was told (never the credential itself). */
export interface IdentityAuditFields {
  mode: "assertion" | "token-exchange";
  /** RFC 8693 §4.1: who acts for the caller (token exchange). */
  delegation?: Delegation;
  cached?: boolean;
}

/**
 * The per-request outcome: headers to add to the upstream request, or a refusal. A refusal is a
 * 502 JSON-RPC error for the client with no detail (`reason` is for logs and audit only).
 */
export type UpstreamCredential =
  | { ok: true; headers: Record<string, string>; audit?: IdentityAuditFields }
  | {
      ok: false;
      reason: "exchange_failed" | "refused_for_keys" | "no_token";
      detail?: Extract<ExchangeResult, { ok: false }>["reason"];
      audit: IdentityAuditFields;
    };

/** The identity hook of one upstream. */
export interface UpstreamIdentity {
  readonly mode: IdentityMode;
  /** The header it sets (lower case), or undefined for `none`. */
  readonly header: string | undefined;
  /** Headers for one upstream request. */
  credential(request: UpstreamCredentialRequest): Promise<UpstreamCredential>;
  /**
   * The environment of a stdio child started for a session (DESIGN.md §9): `MCPGATE_IDENTITY` (an
   * assertion valid for the session's idle TTL), `MCPGATE_SUBJECT`, `MCPGATE_SCOPES`. Empty for `none`.
   */
  stdioEnv(
    identity: Identity,
    sessionId: string | undefined,
    idleTtlMs: number,
  ): Promise<Record<string, string>>;
}

const NONE: UpstreamIdentity = {
  mode: "none",
  header: undefined,
  credential: async () => ({ ok: true, headers: {} }),
  stdioEnv: async () => ({}),
};

/**
 * Build the identity hook of one upstream.
 *
 * @example
 * const hook = createUpstreamIdentity({ upstream: "notes", mode: "assertion", audience: url, signer });
 * const cred = await hook.credential({ identity, sessionId });
 * if (cred.ok) Object.assign(upstreamHeaders, cred.headers);
 */
export function createUpstreamIdentity(options: UpstreamIdentityOptions): UpstreamIdentity {
  if (options.mode === "none") return NONE;
  const header = (options.header ?? "authorization").toLowerCase();
  const signer = options.signer;
  const exchanger = options.exchanger;
  const forKeys = options.forKeys ?? "assertion";
  if (options.mode === "assertion" && !signer)
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      `upstream ${options.upstream}: assertion mode needs a signer`,
    );
  if (options.mode === "token-exchange" && (!exchanger || (forKeys === "assertion" && !signer)))
    throw new McpGateError(
      "ERR_INVALID_OPTION",
      `upstream ${options.upstream}: token-exchange needs an exchanger (and a signer for forKeys: assertion)`,
    );
  // RFC 6750 §2.1 for Authorization; a custom header carries the bare token.
  const value = (token: string) => (header === "authorization" ? `Bearer ${token}` : token);

  async function assertion(req: UpstreamCredentialRequest): Promise<UpstreamCredential> {
    const request: Parameters<AssertionSigner["sign"]>[0] = {
      identity: req.identity,
      audience: options.audience,
    };
    if (req.sessionId !== undefined) request.sessionId = req.sessionId;
    const jwt = await signer!.sign(request);
    return { ok: true, headers: { [header]: value(jwt) }, audit: { mode: "assertion" } };
  }

  async function exchange(req: UpstreamCredentialRequest): Promise<UpstreamCredential> {
    if (req.identity.kind !== "oauth2") {
      if (forKeys === "refuse")
        return { ok: false, reason: "refused_for_keys", audit: { mode: "token-exchange" } };
      return assertion(req);
    }
    if (!req.token) return { ok: false, reason: "no_token", audit: { mode: "token-exchange" } };
    const ask: Parameters<TokenExchanger["exchange"]>[0] = {
      subjectToken: req.token,
      resource: options.resource ?? options.audience,
      upstream: options.upstream,
      owner: req.identity.principal,
    };
    if (req.identity.expiresAt !== undefined) ask.subjectExpiresAt = req.identity.expiresAt;
    if (options.exchangeAudience !== undefined) ask.audience = options.exchangeAudience;
    const client = typeof exchanger === "function" ? exchanger(req.identity) : exchanger;
    if (!client)
      return {
        ok: false,
        reason: "exchange_failed",
        detail: "unavailable",
        audit: { mode: "token-exchange" },
      };
    const r = await client.exchange(ask);
    if (!r.ok)
      return {
        ok: false,
        reason: "exchange_failed",
        detail: r.reason,
        // The delegation that was asked for: the gateway's client acting for the caller.
        audit: { mode: "token-exchange", delegation: { act: { sub: client.clientId } } },
      };
    return {
      ok: true,
      headers: { [header]: value(r.accessToken) },
      audit: { mode: "token-exchange", delegation: r.delegation, cached: r.cached },
    };
  }

  return {
    mode: options.mode,
    header,
    credential: options.mode === "assertion" ? assertion : exchange,
    async stdioEnv(identity, sessionId, idleTtlMs): Promise<Record<string, string>> {
      if (!signer) return {};
      const request: Parameters<AssertionSigner["sign"]>[0] = {
        identity,
        audience: options.audience,
        ttlMs: idleTtlMs,
        // The child keeps its environment for the session's life: valid for the idle TTL (§9),
        // signed for it alone when it starts.
        capAtCredentialExpiry: false,
        fresh: true,
      };
      if (sessionId !== undefined) request.sessionId = sessionId;
      return {
        MCPGATE_IDENTITY: await signer.sign(request),
        MCPGATE_SUBJECT: identity.principal,
        MCPGATE_SCOPES: identity.scopes.join(" "),
      };
    },
  };
}

/**
 * The default assertion audience of an upstream: its URL, or a URN naming it for a stdio child.
 *
 * @example defaultAudience({ name: "notes", command: ["node", "s.js"] }) // "urn:mcpgate:upstream:notes"
 */
export function defaultAudience(upstream: { name: string; url?: string | undefined }): string {
  return upstream.url ?? `urn:mcpgate:upstream:${upstream.name}`;
}
