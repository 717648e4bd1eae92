import { z } from "zod";
import { parseDuration } from "../core/duration.js";

/**
 * The `authServer:` section of the configuration (DESIGN.md §9 "The gateway as authorization
 * server"). Kept beside the authorization server so the contract and its code change together;
 * `src/config.ts` embeds it. Durations stay strings; `resolveAuthServerConfig` parses them.
 */

/** A duration field: "500ms", "10s", "30m", "24h", "90d" or milliseconds (shared with src/config.ts). */
export const durationSchema = z.union([z.string(), z.number()]).refine(
  (v) => {
    try {
      parseDuration(v);
      return true;
    } catch {
      return false;
    }
  },
  { message: "invalid duration: use e.g. 500ms, 10s, 30m, 24h, 90d" },
);

/** The shortest `clients.unusedClientTtl` accepted. */
const MIN_UNUSED_CLIENT_TTL_MS = 3_600_000;

/** Whether a duration is at least `minMs` (one that does not parse is durationSchema's to report). */
function atLeast(value: string | number, minMs: number): boolean {
  try {
    return parseDuration(value) >= minMs;
  } catch {
    return true;
  }
}

/** A duration in ms, 0 when it does not parse (durationSchema reports that). */
function safeMs(value: string | number): number {
  try {
    return parseDuration(value);
  } catch {
    return 0;
  }
}

const oidcLogin = z.strictObject({
  /** The upstream IdP's issuer (OIDC Discovery runs against it). */
  issuer: z.string().url(),
  clientId: z.string().min(1),
  /** Absent: a public client (PKCE only). */
  clientSecret: z.string().optional(),
  scopes: z.array(z.string()).default(["openid", "email"]),
  /** The ID-token claim that names the person (`sub`, `email`, `preferred_username`, …). */
  subjectClaim: z.string().default("sub"),
  /** Only these email domains may log in (the `email` claim, which must then be verified). */
  allowedEmailDomains: z.array(z.string().min(1)).optional(),
  /** Only people whose claim has one of these values may log in, e.g. `{ groups: [mcp-users] }`. */
  allowedClaims: z.record(z.string(), z.array(z.string())).optional(),
});

/** The `authServer:` section (optional: absent, the gateway is a resource server only). */
export const authServerSchema = z
  .strictObject({
    /** The issuer URL (default: the publicUrl origin). */
    issuer: z.string().url().optional(),
    login: z
      .strictObject({
        oidc: oidcLogin.optional(),
        apiKey: z.strictObject({}).optional(),
      })
      .refine((l) => (l.oidc ? 1 : 0) + (l.apiKey ? 1 : 0) === 1, {
        message: "set exactly one of authServer.login.oidc or authServer.login.apiKey",
      }),
    clients: z
      .strictObject({
        /** RFC 7591 dynamic client registration at /oauth/register. */
        registration: z.boolean().default(true),
        /** Client ID Metadata Documents (an https client_id URL). */
        metadataDocuments: z.boolean().default(true),
        /** Development only: CIMD URLs and redirect URIs on loopback over http. */
        allowLoopbackMetadataDocuments: z.boolean().default(false),
        /** Most dynamically registered clients kept; registration beyond is refused. */
        maxRegistered: z.number().int().positive().default(10_000),
        /**
         * Registrations accepted per source (an IPv4 address, an IPv6 /64) per window, and per IPv6
         * /48 (`ipv6Slash48Limit`, default 4 × `limit`: one holder of a /48 has 65 536 /64s).
         */
        registrationRateLimit: z
          .strictObject({
            limit: z.number().int().positive(),
            window: durationSchema,
            ipv6Slash48Limit: z.number().int().positive().optional(),
          })
          .refine((r) => r.ipv6Slash48Limit === undefined || r.ipv6Slash48Limit >= r.limit, {
            message: "must be at least registrationRateLimit.limit (a /48 holds many /64s)",
            path: ["ipv6Slash48Limit"],
          })
          .default({ limit: 10, window: "1m" }),
        /**
         * How long a registered client is kept while no code or token is issued to it (then it must
         * register again), so a cap filled by unused registrations frees itself. At least 1h.
         */
        unusedClientTtl: durationSchema
          .refine((v) => atLeast(v, MIN_UNUSED_CLIENT_TTL_MS), {
            message: "must be at least 1h (a client needs time between registering and its first login)",
          })
          .default("30d"),
      })
      .default({
        registration: true,
        metadataDocuments: true,
        allowLoopbackMetadataDocuments: false,
        maxRegistered: 10_000,
        registrationRateLimit: { limit: 10, window: "1m" },
        unusedClientTtl: "30d",
      }),
    tokens: z
      .strictObject({ accessTtl: durationSchema.default("1h"), refreshTtl: durationSchema.default("30d") })
      .default({ accessTtl: "1h", refreshTtl: "30d" }),
    consent: z.strictObject({ remember: durationSchema.default("30d") }).default({ remember: "30d" }),
    /** Scopes clients may ask for (default: the scopes the policy uses). */
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/)).optional(),
    /** Clients, grants, refresh tokens: `sqlite:PATH` | `postgres://…` | `memory:`. Default: auth.apiKeys.store, else sqlite:./mcpgate.db. */
    store: z.string().optional(),
  })
  // A client forgotten before its refresh tokens expire strands them: the client cannot refresh.
  .refine((a) => atLeast(a.clients.unusedClientTtl, safeMs(a.tokens.refreshTtl)), {
    message:
      "clients.unusedClientTtl must be at least tokens.refreshTtl (an unused client's refresh tokens would outlive it)",
    path: ["clients", "unusedClientTtl"],
  })
  .optional();

/** The parsed `authServer:` section. */
export type AuthServerConfig = NonNullable<z.infer<typeof authServerSchema>>;
