import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type Provider from "oidc-provider";
import type { InteractionDetails } from "oidc-provider";
import type { CredentialVerifier } from "../authn/verifier.js";
import type { AuditEvent } from "../core/audit-event.js";
import type { Guard } from "../core/contracts.js";
import { displayOf } from "../core/identity.js";
import type { OAuthRecordStore } from "../stores/oauth-records.js";
import { isLoopbackHost } from "./client-policy.js";
import { cookieValue, readForm } from "./http-util.js";
import { apiKeyLoginPage, consentPage, errorPage, sendPage } from "./pages.js";
import type { PendingLogin, UpstreamLogin } from "./upstream-login.js";

/**
 * The person-facing part of the authorization server: login (an mcpgate API key, or the team's
 * OpenID Provider) and per-client consent (MCP security best practices, "Confused Deputy": the
 * client's name, its redirect host, the scopes and the resource are shown; the form is CSRF-bound
 * to this browser's interaction cookie; deny answers `access_denied`).
 *
 * Paths: GET /oauth/interaction/<uid> (page), POST …/<uid>/login, POST …/<uid>/consent,
 * GET /oauth/callback (the IdP's redirect) → GET …/<uid>/idp (where the interaction cookie is sent).
 */

/** Options of {@link createInteractions}. */
export interface InteractionOptions {
  provider: Provider;
  store: OAuthRecordStore;
  /** HMAC key for CSRF tokens (shared by every instance). */
  csrfKey: string;
  /** The issuer URL (absolute links for the IdP callback). */
  issuer: string;
  /** Scopes the server supports (what a consent may grant). */
  scopes: readonly string[];
  /** Scopes an account may hold (undefined: any). */
  accountScopes(accountId: string): Promise<string[] | undefined>;
  login: { apiKey: CredentialVerifier } | { oidc: UpstreamLogin };
  /** The credential-guessing guard: wrong keys typed on the login page count as failures of their source. */
  guard?: Guard;
  /** Sign-ins and consents, for the audit trail (display prefixes and ids only, never a key). */
  audit?: (event: Omit<AuditEvent, "time">) => void;
}

const PREFIX = "/oauth/interaction/";
const UID = /^[A-Za-z0-9_-]{1,64}$/;
// The IdP round trip must finish within this (the pending record expires).
const PENDING_TTL_SEC = 600;

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(303, { location, "cache-control": "no-store" }).end();
}

function asList(v: unknown): string[] {
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === "string");
  return typeof v === "string" ? [v] : [];
}

/**
 * Create the interaction handler; `handle` returns false for paths it does not own.
 *
 * @example if (await interactions.handle(req, res)) return;
 */
export function createInteractions(options: InteractionOptions) {
  const { provider, store } = options;

  // CSRF token = HMAC(key, uid | the browser's interaction cookie): a page rendered for one browser
  // is useless in another, and a forged cross-site POST lacks it (SameSite=Lax also keeps the cookie off).
  function csrfFor(req: IncomingMessage, uid: string): string {
    const cookie = cookieValue(req, "_interaction") ?? "";
    return createHmac("sha256", options.csrfKey).update(`csrf|${uid}|${cookie}`).digest("base64url");
  }
  function csrfOk(req: IncomingMessage, uid: string, given: string | null): boolean {
    const want = Buffer.from(csrfFor(req, uid));
    const got = Buffer.from(given ?? "");
    return got.length === want.length && timingSafeEqual(got, want);
  }

  async function details(
    req: IncomingMessage,
    res: ServerResponse,
    uid: string,
  ): Promise<InteractionDetails | undefined> {
    try {
      const d = await provider.interactionDetails(req, res);
      if (d.uid === uid) return d;
    } catch {
      // No interaction cookie for this browser, or it expired.
    }
    sendPage(
      res,
      400,
      "Sign-in expired",
      errorPage(
        "This sign-in has expired or was started in another browser. Start again from your application.",
      ),
    );
    return undefined;
  }

  async function showLogin(req: IncomingMessage, res: ServerResponse, d: InteractionDetails, error?: string) {
    if ("apiKey" in options.login) {
      sendPage(
        res,
        error ? 401 : 200,
        "Sign in",
        apiKeyLoginPage(`${PREFIX}${d.uid}/login`, csrfFor(req, d.uid), error),
      );
      return;
    }
    const { url, pending } = await options.login.oidc.start();
    await store.upsert("UpstreamLogin", pending.state, { ...pending, uid: d.uid }, PENDING_TTL_SEC);
    redirect(res, url);
  }

  async function showConsent(req: IncomingMessage, res: ServerResponse, d: InteractionDetails) {
    const clientId = String(d.params.client_id ?? "");
    const client = await provider.Client.find(clientId);
    const redirectUri = String(d.params.redirect_uri ?? "");
    let host = "";
    let loopback = false;
    try {
      const u = new URL(redirectUri);
      host = u.host;
      loopback = isLoopbackHost(u.hostname);
    } catch {}
    const account = d.session?.accountId ?? "";
    const allowed = await options.accountScopes(account);
    const scopes = asList(d.params.scope)
      .flatMap((s) => s.split(" "))
      .filter((s) => options.scopes.includes(s) && (!allowed || allowed.includes(s)));
    sendPage(
      res,
      200,
      "Allow access?",
      consentPage({
        action: `${PREFIX}${d.uid}/consent`,
        csrf: csrfFor(req, d.uid),
        clientName: client?.clientName ?? clientId,
        clientId,
        redirectHost: host,
        loopbackRedirect: loopback,
        scopes: [...new Set(scopes)],
        resources: asList(d.params.resource),
        who: account.startsWith("key:") ? `API key mcpg_${account.slice(4)}` : account.replace(/^idp:/, ""),
      }),
    );
  }

  async function page(req: IncomingMessage, res: ServerResponse, uid: string) {
    const d = await details(req, res, uid);
    if (!d) return;
    if (d.prompt.name === "login") return showLogin(req, res, d);
    if (d.prompt.name === "consent") return showConsent(req, res, d);
    sendPage(res, 400, "Unsupported", errorPage("This request needs a step this server does not offer."));
  }

  async function postLogin(req: IncomingMessage, res: ServerResponse, uid: string) {
    const form = await readForm(req);
    const d = await details(req, res, uid);
    if (!d) return;
    if (!form || !csrfOk(req, uid, form.get("csrf")) || !("apiKey" in options.login)) {
      sendPage(res, 403, "Forbidden", errorPage("The form was not sent from this sign-in page."));
      return;
    }
    const guard = options.guard;
    const source = guard?.sourceOf(req.socket.remoteAddress, req.headers) ?? "";
    const wait = guard ? await guard.lockedFor(source) : 0;
    if (wait > 0) {
      // The login page is a key oracle: the same lockout as the MCP endpoint applies to it.
      res.setHeader("retry-after", String(wait));
      sendPage(
        res,
        429,
        "Too many attempts",
        errorPage(`Too many wrong keys from this address. Try again in ${wait} s.`),
      );
      return;
    }
    const key = (form.get("key") ?? "").trim();
    const verified = key ? await options.login.apiKey.verify(key) : undefined;
    const client = String(d.params.client_id ?? "");
    if (!verified?.ok || !verified.identity.principal.startsWith("key:")) {
      options.audit?.({
        type: "oauth_login_refused",
        ip: source || undefined,
        reason: !key ? "missing" : verified && !verified.ok ? verified.reason : "not_a_stored_key",
        detail: { method: "apiKey", client },
      });
      await guard?.recordFailure(source);
      // Same answer for every failure: the page must not help guess keys.
      return showLogin(req, res, d, "That key was not accepted.");
    }
    options.audit?.({
      type: "oauth_login",
      actor: displayOf(verified.identity),
      ip: source || undefined,
      detail: { method: "apiKey", account: verified.identity.principal, client },
    });
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: verified.identity.principal } },
      { mergeWithLastSubmission: false },
    );
  }

  async function idpCallback(req: IncomingMessage, res: ServerResponse, uid: string, query: string) {
    const d = await details(req, res, uid);
    if (!d || !("oidc" in options.login)) return;
    const state = new URLSearchParams(query).get("state") ?? "";
    const pending = (await store.find("UpstreamLogin", state)) as
      | (PendingLogin & { uid?: string })
      | undefined;
    // Single use, and only for the interaction (and so the browser) that started it.
    if (pending) await store.destroy("UpstreamLogin", state);
    if (!pending || pending.uid !== uid) {
      sendPage(
        res,
        400,
        "Sign-in failed",
        errorPage("This sign-in response does not belong to this browser."),
      );
      return;
    }
    const result = await options.login.oidc.finish(
      new URL(`${options.issuer}/oauth/callback?${query}`),
      pending,
    );
    const source = options.guard?.sourceOf(req.socket.remoteAddress, req.headers) || undefined;
    const client = String(d.params.client_id ?? "");
    if (!result.ok) {
      options.audit?.({
        type: "oauth_login_refused",
        ip: source,
        reason: result.reason.slice(0, 120),
        detail: { method: "oidc", client },
      });
      await provider.interactionFinished(
        req,
        res,
        { error: "access_denied", error_description: result.reason },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    options.audit?.({
      type: "oauth_login",
      actor: `idp:${result.subject}`.slice(0, 200),
      ip: source,
      detail: { method: "oidc", client },
    });
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: `idp:${result.subject}` } },
      { mergeWithLastSubmission: false },
    );
  }

  async function postConsent(req: IncomingMessage, res: ServerResponse, uid: string) {
    const form = await readForm(req);
    const d = await details(req, res, uid);
    if (!d) return;
    if (!form || !csrfOk(req, uid, form.get("csrf")) || d.prompt.name !== "consent") {
      sendPage(res, 403, "Forbidden", errorPage("The form was not sent from this consent page."));
      return;
    }
    const decidedBy = d.session?.accountId ?? "";
    const decidedFor = String(d.params.client_id ?? "");
    const consentIp = options.guard?.sourceOf(req.socket.remoteAddress, req.headers) || undefined;
    if (form.get("decision") !== "approve") {
      options.audit?.({
        type: "oauth_consent",
        actor: decidedBy,
        ip: consentIp,
        detail: { decision: "deny", client: decidedFor },
      });
      // MCP security best practices: a denial reaches the client as access_denied (RFC 6749 §4.1.2.1).
      await provider.interactionFinished(
        req,
        res,
        { error: "access_denied", error_description: "the user denied access" },
        { mergeWithLastSubmission: true },
      );
      return;
    }
    const accountId = d.session?.accountId ?? "";
    const clientId = String(d.params.client_id ?? "");
    const grant =
      (d.grantId ? await provider.Grant.find(d.grantId) : undefined) ??
      new provider.Grant({ accountId, clientId });
    const det = d.prompt.details as {
      missingOIDCScope?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    if (det.missingOIDCScope?.length) grant.addOIDCScope(det.missingOIDCScope.join(" "));
    for (const [resource, scopes] of Object.entries(det.missingResourceScopes ?? {})) {
      grant.addResourceScope(resource, scopes.join(" "));
    }
    const grantId = await grant.save();
    options.audit?.({
      type: "oauth_consent",
      actor: decidedBy,
      ip: consentIp,
      detail: {
        decision: "approve",
        client: decidedFor,
        scopes: [
          ...(det.missingOIDCScope ?? []),
          ...Object.values(det.missingResourceScopes ?? {}).flat(),
        ].join(" "),
      },
    });
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  return {
    async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
      const [path = "", query = ""] = (req.url ?? "/").split("?", 2);
      if (path === "/oauth/callback" && req.method === "GET") {
        const state = new URLSearchParams(query).get("state") ?? "";
        const pending = state
          ? ((await store.find("UpstreamLogin", state)) as { uid?: string } | undefined)
          : undefined;
        if (!pending?.uid || !UID.test(pending.uid)) {
          sendPage(res, 400, "Sign-in failed", errorPage("Unknown or expired sign-in response."));
          return true;
        }
        // The interaction cookie is scoped to the interaction's path: continue there.
        redirect(res, `${PREFIX}${pending.uid}/idp?${query}`);
        return true;
      }
      if (!path.startsWith(PREFIX)) return false;
      const [uid = "", step = "", extra] = path.slice(PREFIX.length).split("/");
      if (!UID.test(uid) || extra !== undefined) return false;
      if (req.method === "GET" && step === "") await page(req, res, uid);
      else if (req.method === "GET" && step === "idp") await idpCallback(req, res, uid, query);
      else if (req.method === "POST" && step === "login") await postLogin(req, res, uid);
      else if (req.method === "POST" && step === "consent") await postConsent(req, res, uid);
      else return false;
      return true;
    },
  };
}
