/**
 * `mcpgate`: the gate, the credential verifiers, the core types and the store interfaces.
 * Named exports only (STYLE.md rule 2). Framework adapters live in `mcpgate/express` and
 * `mcpgate/node`, SDK helpers in `mcpgate/sdk`, drivers in `mcpgate/stores/*`, logs, metrics,
 * audit and alerts in `mcpgate/observe`, the gateway (`startGateway`, config) in `mcpgate/gateway`.
 * Importing this entry loads no HTTP client, logger, metrics, schema or process module
 * (test/architecture/root-import.test.ts).
 */

export { generateApiKey, hashSecret, parseApiKey } from "./authn/api-key.js";
// authn
export { type BearerResult, parseBearer } from "./authn/bearer.js";
export { createIntrospectionVerifier, type IntrospectionOptions } from "./authn/introspection.js";
export { discoverIssuer, type IssuerMetadata, metadataUrls } from "./authn/issuer-discovery.js";
export { createJwksKeySource, type JwksKeySource, type JwksOptions } from "./authn/jwks.js";
export {
  createJwtVerifier,
  DEFAULT_ALGORITHMS,
  type JwtIssuerOptions,
  type JwtVerifier,
  type JwtVerifierOptions,
} from "./authn/jwt.js";
export {
  type IssuedKey,
  type IssueKeyOptions,
  issueApiKey,
  type RotateKeyResult,
  rotateApiKey,
} from "./authn/key-lifecycle.js";
export { createStaticKeyVerifier, type StaticKeyOptions, staticKeyFingerprint } from "./authn/static-key.js";
export { type ApiKeyVerifier, type ApiKeyVerifierOptions, createApiKeyVerifier } from "./authn/stored-key.js";
export { createTokenCache, type TokenCache, type TokenCacheOptions } from "./authn/token-cache.js";
export type { CredentialVerifier, VerifyResult } from "./authn/verifier.js";
// authz: per-tool policy and rate-limit planning (docs/policy.md)
export {
  compileGlob,
  compilePolicy,
  type Policy,
  type PolicyInput,
  type PolicyKind,
  type PolicyRule,
  type PolicyRuleInput,
  type PolicyVerdict,
  scopeCovers,
} from "./authz/policy.js";
export { isProbeAllowedMethod, PROBE_ALLOWED_METHODS } from "./authz/probe.js";
export {
  createRateLimitPlanner,
  type RateLimitPlanInput,
  type ToolLimitInput,
} from "./authz/rate-limit-plan.js";
export type { AuditEvent, AuditEventType } from "./core/audit-event.js";
// core
export {
  bearerChallenge,
  type ChallengeContext,
  type HttpResponseSpec,
  headerQuoted,
  renderDenial,
} from "./core/challenge.js";
export type {
  AdmitInput,
  AdmitResult,
  Authorizer,
  AuthzDecision,
  GateObserver,
  GateRequest,
  Guard,
  RateBucket,
  RateLimitPlanner,
  RateOutcome,
  SessionCheck,
  SessionOwner,
  StateStore,
} from "./core/contracts.js";
export { parseDuration } from "./core/duration.js";
export { ERROR_CODES, type ErrorCode, isMcpGateError, McpGateError } from "./core/errors.js";
export { displayOf, type Identity, type SdkAuthInfo, toAuthInfo } from "./core/identity.js";
export type { AuthFailureReason, Denial } from "./core/outcome.js";
export {
  signWebhookPayload,
  verifyWebhookPayload,
  WEBHOOK_SIGNATURE_HEADER,
  WEBHOOK_TIMESTAMP_HEADER,
} from "./core/webhook-signature.js";
// gate
export { type Admission, createGate, type Gate, type GateDecision, type GateOptions } from "./gate/gate.js";
// stores
export { type KeyRecord, type KeyStatus, type KeyStore, keyStatus } from "./stores/key-store.js";
export { createMemoryKeyStore } from "./stores/memory-keys.js";
export {
  createMemoryStateStore,
  type MemoryStateStore,
  type MemoryStateStoreOptions,
} from "./stores/memory-state.js";
export { openKeyStore, parseKeyStoreLocation } from "./stores/open-key-store.js";
export {
  type ActiveSigningKey,
  createMemorySigningKeyStore,
  openSigningKeyStore,
  type RotateSigningKeyOptions,
  type SigningAlg,
  type SigningKeyInfo,
  type SigningKeySet,
  type SigningKeyStore,
} from "./stores/signing-keys.js";
