import { z } from "zod";
import { authServerSchema, durationSchema } from "./authserver/config-schema.js";
import { readConfigFile } from "./core/config-file.js";
import { parseDuration } from "./core/duration.js";
import { interpolateEnv } from "./core/env-interpolation.js";
import { McpGateError } from "./core/errors.js";
import { tracingSchema } from "./gateway/tracing-config.js";
import { DEFAULT_ANSWER_BUFFER, DEFAULT_ANSWER_BUFFER_PER_CALLER } from "./http/answer-budget.js";

/**
 * The configuration file (DESIGN.md §7): YAML or JSON by extension, `${VAR}` from the environment,
 * validated with zod. Durations stay strings here and are parsed where they are used
 * (`durationMs`), so error messages can name the field.
 */

const duration = durationSchema;

// RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
export const SCOPE_PATTERN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
const scope = z
  .string()
  .regex(SCOPE_PATTERN, "invalid scope: printable ASCII, no spaces, quotes or backslashes");

const issuerSchema = z.strictObject({
  issuer: z.string().url(),
  audience: z.union([z.string(), z.array(z.string())]).optional(),
  jwksUri: z.string().url().optional(),
  algorithms: z.array(z.string()).optional(),
  clockTolerance: duration.optional(),
  cacheTtl: duration.optional(),
  jwksTimeout: duration.optional(),
  jwksCooldown: duration.optional(),
  jwksMaxAge: duration.optional(),
  typ: z.string().optional(),
  introspection: z
    .strictObject({
      endpoint: z.string().url(),
      clientId: z.string().optional(),
      clientSecret: z.string().optional(),
      timeout: duration.optional(),
    })
    .optional(),
});
export type IssuerConfig = z.infer<typeof issuerSchema>;

const ruleBase = {
  match: z.string().min(1),
  scopes: z.array(scope).default([]),
  mode: z.enum(["all", "any"]).default("all"),
};
const policyRule = z.strictObject(ruleBase);

const policySchema = z.strictObject({
  default: z.enum(["allow", "deny"]).default("deny"),
  onDenied: z.enum(["auto", "tool-error", "step-up"]).default("auto"),
  tools: z.array(policyRule).default([]),
  resources: z.array(policyRule).default([]),
  prompts: z.array(policyRule).default([]),
});

const rateLimitSchema = z.strictObject({
  perPrincipal: z.strictObject({ limit: z.number().int().positive(), window: duration }).optional(),
  tools: z
    .array(z.strictObject({ match: z.string().min(1), limit: z.number().int().positive(), window: duration }))
    .default([]),
  failOpen: z.boolean().default(false),
});

/** Every `upstream.*` field: the one-upstream shorthand and each `upstreams[]` entry share them. */
const upstreamFields = {
  url: z.string().url().optional(),
  command: z.array(z.string()).min(1).optional(),
  env: z.record(z.string(), z.string()).optional(),
  /** stdio: more of the gateway's variables passed to the child; never the gateway's own secrets. */
  envAllow: z
    .array(
      z.string().refine((name) => name !== "MCP_API_KEY" && !/^MCPGATE_/i.test(name), {
        message:
          "names a secret of the gateway's own (MCP_API_KEY, MCPGATE_*: a signing-key secret, a key pepper): a child never gets it",
      }),
    )
    .optional(),
  headers: z.record(z.string(), z.string()).default({}),
  timeout: duration.default("30s"),
  maxChildren: z.number().int().positive().optional(),
  /** stdio: children one principal may hold (issue 14 item 3); default a tenth of maxChildren. */
  maxChildrenPerPrincipal: z.number().int().positive().optional(),
  /** HTTP: a principal's share of this upstream's 128 connections (docs/configuration.md); default a quarter. */
  maxInFlightPerCaller: z.number().int().positive().optional(),
  /** HTTP: longest silence of a POST's SSE answer before the gateway gives it up (default 5m; 0s: none). */
  streamIdleTimeout: duration.optional(),
  /** stdio: children kept for 2026-era stateless requests (docs/stdio.md). */
  poolSize: z.number().int().positive().optional(),
  /** stdio: time between SIGTERM and SIGKILL when a child is ended. */
  killGrace: duration.optional(),
};

// RFC 9110 §5.1 field-name token.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Headers an identity credential may not replace: framing, hop-by-hop, MCP's own, and cookies.
const RESERVED_HEADERS = new Set([
  "host",
  "content-length",
  "content-type",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "upgrade",
  "te",
  "trailer",
  "accept",
  "cookie",
  "mcp-session-id",
  "mcp-protocol-version",
  "mcp-method",
  "mcp-name",
  "last-event-id",
  "traceparent",
  "tracestate",
]);

/** How one upstream is told who calls (DESIGN.md §9): per upstream, over the top-level `identity`. */
const upstreamIdentityFields = {
  mode: z.enum(["none", "assertion", "token-exchange"]).optional(),
  header: z
    .string()
    .regex(HEADER_NAME, "invalid header name")
    .refine((h) => !RESERVED_HEADERS.has(h.toLowerCase()), {
      message: "this header cannot carry the identity",
    })
    .optional(),
  audience: z.string().min(1).optional(),
  tokenEndpoint: z.string().url().optional(),
  clientId: z.string().min(1).optional(),
  clientSecret: z.string().min(1).optional(),
  forKeys: z.enum(["assertion", "refuse"]).optional(),
};
const upstreamIdentitySchema = z.strictObject(upstreamIdentityFields);

const identitySchema = z.strictObject({
  ...upstreamIdentityFields,
  /** `iss` of assertions; default the publicUrl origin. */
  issuer: z.string().url().optional(),
  ttl: duration
    .refine((v) => parseDuration(v) >= 1000 && parseDuration(v) <= 3_600_000, {
      message: "identity.ttl must be between 1s and 1h",
    })
    .optional(),
  alg: z.enum(["ES256", "EdDSA"]).optional(),
  /** Where the signing keys live; default auth.apiKeys.store, else sqlite:./mcpgate.db. */
  keyStore: z.string().optional(),
});

const upstreamEntrySchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9-]{1,63}$/, "upstream name: lower-case letters, digits and -"),
    path: z
      .string()
      .regex(/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/, "upstream path: an absolute URL path")
      .refine((p) => !/^\/(\.well-known|oauth|healthz|metrics)(\/|$)/.test(p), {
        message: "upstream path: /.well-known, /oauth, /healthz and /metrics belong to the gateway",
      }),
    ...upstreamFields,
    identity: upstreamIdentitySchema.optional(),
    policy: policySchema.optional(),
    rateLimit: rateLimitSchema.optional(),
  })
  .refine((u) => Boolean(u.url) !== Boolean(u.command), {
    message: "set either url or command (exactly one)",
  });

const listenSchema = z.strictObject({
  host: z.string().default("127.0.0.1"),
  port: z.number().int().min(0).max(65535).default(8080),
});

const configObject = z.strictObject({
  listen: listenSchema.default({ host: "127.0.0.1", port: 8080 }),
  publicUrl: z.string().url().optional(),
  mcpPath: z.string().startsWith("/").default("/mcp"),
  upstream: z
    .strictObject(upstreamFields)
    .refine((u) => !(u.url && u.command), {
      message: "set either upstream.url or upstream.command, not both",
    })
    .optional(),
  /** Several upstreams behind one gateway, each its own protected resource (DESIGN.md §9, docs/upstreams.md). */
  upstreams: z.array(upstreamEntrySchema).min(1).optional(),
  /** Telling upstreams who calls (DESIGN.md §9, docs/identity.md): defaults for every upstream. */
  identity: identitySchema.optional(),
  auth: z
    .strictObject({
      staticKey: z
        .strictObject({ env: z.string().default("MCP_API_KEY"), scopes: z.array(scope).optional() })
        .optional(),
      apiKeys: z
        .strictObject({ store: z.string(), pepperEnv: z.string().optional(), cacheTtl: duration.optional() })
        .optional(),
      jwt: issuerSchema.optional(),
      issuers: z.array(issuerSchema).optional(),
      realm: z.string().default("mcp"),
      /** `scope` of 401 challenges (issue 14 item 7); default: what the policy's catch-all rules need. */
      challengeScopes: z.array(scope).optional(),
    })
    .default({ realm: "mcp" }),
  state: z
    .strictObject({ redis: z.string().optional(), prefix: z.string().default("mcpgate:") })
    .default({ prefix: "mcpgate:" }),
  sessions: z
    .strictObject({
      idleTtl: duration.default("30m"),
      max: z.number().int().positive().default(100_000),
      /** Live sessions of one principal (issue 14 item 3); default: stores/memory-state.ts defaultSessionsPerPrincipal. */
      perPrincipal: z.number().int().positive().optional(),
    })
    .default({ idleTtl: "30m", max: 100_000 }),
  policy: policySchema.optional(),
  rateLimit: rateLimitSchema.optional(),
  guard: z
    .strictObject({
      failures: z.number().int().positive().default(20),
      window: duration.default("1m"),
      lockout: duration.default("15m"),
      trustProxy: z.boolean().default(false),
    })
    .optional(),
  alerts: z.strictObject({ webhook: z.string().url(), secret: z.string().optional() }).optional(),
  metrics: z.strictObject({ listen: z.string().default("127.0.0.1:9464") }).optional(),
  logging: z
    .strictObject({
      level: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
      audit: z.string().optional(),
      redactHeaders: z.array(z.string()).default([]),
    })
    .default({ level: "info", redactHeaders: [] }),
  origins: z.array(z.string()).optional(),
  /** OpenTelemetry traces (DESIGN.md §9; src/gateway/tracing-config.ts, docs/tracing.md). */
  tracing: tracingSchema,
  /** The gateway as OAuth authorization server (DESIGN.md §9; src/authserver/config-schema.ts). */
  authServer: authServerSchema,
  limits: z
    .strictObject({
      maxBody: z
        .number()
        .int()
        .positive()
        .default(4 * 1024 * 1024),
      headersTimeout: duration.default("10s"),
      requestTimeout: duration.default("60s"),
      shutdownGrace: duration.default("10s"),
      /** Characters of upstream answers held for clients that have not taken them yet, all callers. */
      answerBuffer: z.number().int().positive().default(DEFAULT_ANSWER_BUFFER),
      /** The same, per caller (principal). */
      answerBufferPerCaller: z.number().int().positive().default(DEFAULT_ANSWER_BUFFER_PER_CALLER),
    })
    .default({
      maxBody: 4 * 1024 * 1024,
      answerBuffer: DEFAULT_ANSWER_BUFFER,
      answerBufferPerCaller: DEFAULT_ANSWER_BUFFER_PER_CALLER,
      headersTimeout: "10s",
      requestTimeout: "60s",
      shutdownGrace: "10s",
    }),
});

/** The configuration file's schema: the fields, then the rules that span them. */
export const configSchema = configObject.superRefine(checkUpstreams);

export type GatewayConfig = z.infer<typeof configSchema>;
export type GatewayConfigInput = z.input<typeof configSchema>;

type UpstreamEntry = z.infer<typeof upstreamEntrySchema>;
type ConfigShape = { upstream?: UpstreamEntry | Omit<UpstreamEntry, "name" | "path"> | undefined } & {
  upstreams?: UpstreamEntry[] | undefined;
  identity?: z.infer<typeof identitySchema> | undefined;
  mcpPath: string;
  auth: { jwt?: unknown; issuers?: unknown[] | undefined };
};

/**
 * The rules that span fields (`mcpgate config check` and `serve` both refuse them): unique upstream
 * names and paths, one shape at a time, and an identity that can work — its header not already set
 * by `upstream.headers`, token exchange only for HTTP upstreams and with client credentials and an
 * issuer to exchange at.
 */
function checkUpstreams(config: ConfigShape, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: "custom", path, message });
  if (config.upstream && config.upstreams) {
    issue(["upstreams"], "set either upstream (one upstream at mcpPath) or upstreams (several), not both");
    return;
  }
  const names = new Map<string, number>();
  const paths = new Map<string, number>();
  (config.upstreams ?? []).forEach((u, i) => {
    if (names.has(u.name)) issue(["upstreams", i, "name"], `duplicate upstream name "${u.name}"`);
    names.set(u.name, i);
    // Paths are compared the way they are routed: exact, without a trailing slash.
    const key = u.path.replace(/\/+$/, "") || "/";
    if (paths.has(key)) issue(["upstreams", i, "path"], `duplicate upstream path "${u.path}"`);
    paths.set(key, i);
  });
  const entries: Array<{ at: (string | number)[]; u: Omit<UpstreamEntry, "name" | "path"> }> =
    config.upstreams
      ? config.upstreams.map((u, i) => ({ at: ["upstreams", i], u }))
      : config.upstream
        ? [{ at: ["upstream"], u: config.upstream }]
        : [];
  const top = config.identity ?? {};
  // One audience for several upstreams would let any of them replay a caller's assertion at another.
  if (config.upstreams && config.upstreams.length > 1 && top.audience !== undefined)
    issue(
      ["identity", "audience"],
      "with several upstreams each has its own assertion audience: set identity.audience per upstream, not at the top level",
    );
  const issuerCount = (config.auth.jwt ? 1 : 0) + (config.auth.issuers?.length ?? 0);
  const hasIssuer = issuerCount > 0;
  for (const { at, u } of entries) {
    // A stdio upstream has no connection pool: its share per caller is maxChildrenPerPrincipal.
    if (u.command && u.maxInFlightPerCaller !== undefined)
      issue(
        [...at, "maxInFlightPerCaller"],
        "maxInFlightPerCaller applies to HTTP upstreams (url); a stdio upstream's share per caller is maxChildrenPerPrincipal",
      );
    if (u.command && u.streamIdleTimeout !== undefined)
      issue(
        [...at, "streamIdleTimeout"],
        "streamIdleTimeout applies to HTTP upstreams (url): a stdio child's answers hold no connection",
      );
    const id = { ...top, ...(("identity" in u && u.identity) || {}) };
    const mode = id.mode ?? "none";
    if (mode === "none") continue;
    const header = (id.header ?? "authorization").toLowerCase();
    if (Object.keys(u.headers ?? {}).some((h) => h.toLowerCase() === header))
      issue([...at, "headers"], `identity header "${header}" is already set by headers: remove one of them`);
    if (mode !== "token-exchange") continue;
    if (!u.url) issue([...at, "identity", "mode"], "token-exchange needs an HTTP upstream (url)");
    if (!id.clientId || !id.clientSecret)
      issue([...at, "identity"], "token-exchange needs identity.clientId and identity.clientSecret");
    if (!id.tokenEndpoint && !hasIssuer)
      issue(
        [...at, "identity"],
        "token-exchange needs identity.tokenEndpoint or an auth.jwt issuer to discover it",
      );
    // The gateway's client is registered at one issuer: with several, a caller of another issuer would
    // have its token (and the gateway its client secret) sent to an issuer that is not its own.
    if (issuerCount > 1)
      issue(
        [...at, "identity", "mode"],
        "token-exchange works with exactly one OAuth issuer (auth.jwt or one auth.issuers entry): the gateway's client and the callers' tokens belong to it",
      );
  }
}

/** One upstream as the gateway mounts it: the shorthand `upstream` or one `upstreams[]` entry. */
export interface ResolvedUpstream {
  /** `upstreams[].name`; `default` for the shorthand. */
  name: string;
  /** The MCP endpoint path on the gateway: `upstreams[].path`, or `mcpPath` for the shorthand. */
  path: string;
  /** True for the one-upstream shorthand (`upstream:`): logs and metrics stay as they were. */
  shorthand: boolean;
  /** The `upstream.*` fields. */
  upstream: NonNullable<GatewayConfig["upstream"]>;
  /** Its policy and rate limit, else the top-level ones. */
  policy: GatewayConfig["policy"];
  rateLimit: GatewayConfig["rateLimit"];
  /** Its identity settings over the top-level `identity` (field by field). */
  identity: z.infer<typeof upstreamIdentitySchema>;
}

/**
 * The upstreams a configuration mounts, in order (docs/upstreams.md): each `upstreams[]` entry, or
 * the shorthand `upstream` at `mcpPath`. Empty when neither is set (`serve` then needs a flag).
 *
 * @example resolveUpstreams(config).map((u) => u.path) // ["/notes/mcp", "/files/mcp"]
 */
export function resolveUpstreams(config: GatewayConfig): ResolvedUpstream[] {
  const top = config.identity ?? {};
  const pick = ({ mode, header, audience, tokenEndpoint, clientId, clientSecret, forKeys }: typeof top) =>
    Object.fromEntries(
      Object.entries({ mode, header, audience, tokenEndpoint, clientId, clientSecret, forKeys }).filter(
        ([, v]) => v !== undefined,
      ),
    ) as z.infer<typeof upstreamIdentitySchema>;
  if (config.upstreams) {
    return config.upstreams.map(({ name, path, identity, policy, rateLimit, ...upstream }) => ({
      name,
      path,
      shorthand: false,
      upstream,
      policy: policy ?? config.policy,
      rateLimit: rateLimit ?? config.rateLimit,
      identity: { ...pick(top), ...pick(identity ?? {}) },
    }));
  }
  if (!config.upstream) return [];
  return [
    {
      name: "default",
      path: config.mcpPath,
      shorthand: true,
      upstream: config.upstream,
      policy: config.policy,
      rateLimit: config.rateLimit,
      identity: pick(top),
    },
  ];
}

/** Validate a parsed object; throws ERR_CONFIG_INVALID naming the first bad field(s). */
export function validateConfig(raw: unknown, env: NodeJS.ProcessEnv | null = process.env): GatewayConfig {
  // env === null: the object was interpolated already (e.g. a loaded file merged with flags).
  const interpolated = env === null ? (raw ?? {}) : interpolateEnv(raw ?? {}, env);
  const result = configSchema.safeParse(interpolated);
  if (!result.success) {
    const lines = result.error.issues.slice(0, 5).map((i) => {
      const field = i.path.length ? i.path.join(".") : "(root)";
      return `${field}: ${i.message}`;
    });
    throw new McpGateError("ERR_CONFIG_INVALID", `invalid configuration: ${lines.join("; ")}`);
  }
  return deepFreeze(result.data);
}

/** Read, interpolate and validate a YAML (.yaml/.yml) or JSON (.json) configuration file. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  return validateConfig(readConfigFile(file, "config file"), env);
}

/** Duration field → milliseconds. */
export function durationMs(value: string | number): number {
  return parseDuration(value);
}

function deepFreeze<T>(obj: T): T {
  if (obj && typeof obj === "object" && !Object.isFrozen(obj)) {
    Object.freeze(obj);
    for (const v of Object.values(obj)) deepFreeze(v);
  }
  return obj;
}

/**
 * Where the gateway's signing keys live: one key set for identity assertions and the authorization
 * server's tokens alike, and the one `mcpgate keys rotate-signing` rotates. `identity.keyStore`, else
 * `authServer.store`, else `auth.apiKeys.store`, else `sqlite:./mcpgate.db`.
 *
 * @example openSigningKeyStore(signingKeyLocation(config))
 */
export function signingKeyLocation(config: Pick<GatewayConfig, "identity" | "authServer" | "auth">): string {
  return (
    config.identity?.keyStore ??
    config.authServer?.store ??
    config.auth.apiKeys?.store ??
    "sqlite:./mcpgate.db"
  );
}
