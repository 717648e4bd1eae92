/**
 * `mcpgate`: the gate, the credential verifiers, the core types and the store interfaces.
 * Named exports only (STYLE.md rule 2). Framework adapters live in `mcpgate/express` and
 * `mcpgate/node`, SDK helpers in `mcpgate/sdk`, drivers in `mcpgate/stores/*`.
 */

// core
export { type ChallengeContext, type HttpResponseSpec, bearerChallenge, headerQuoted, renderDenial } from "./core/challenge.js";
export type { AuditEvent, AuditEventType } from "./core/audit-event.js";
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
  SessionOwner,
  StateStore,
} from "./core/contracts.js";
export { parseDuration } from "./core/duration.js";
export { ERROR_CODES, type ErrorCode, isMcpGateError, McpGateError } from "./core/errors.js";
export { displayOf, type Identity, type SdkAuthInfo, toAuthInfo } from "./core/identity.js";
export type { AuthFailureReason, Denial } from "./core/outcome.js";

// authn
export { type BearerResult, parseBearer } from "./authn/bearer.js";
export { createStaticKeyVerifier, type StaticKeyOptions, staticKeyFingerprint } from "./authn/static-key.js";
export type { CredentialVerifier, VerifyResult } from "./authn/verifier.js";
export { generateApiKey, hashSecret, parseApiKey } from "./authn/api-key.js";
export { type ApiKeyVerifier, type ApiKeyVerifierOptions, createApiKeyVerifier } from "./authn/stored-key.js";
export { issueApiKey, type IssueKeyOptions, type IssuedKey } from "./authn/key-lifecycle.js";
export {
  createJwtVerifier,
  DEFAULT_ALGORITHMS,
  type JwtIssuerOptions,
  type JwtVerifier,
  type JwtVerifierOptions,
} from "./authn/jwt.js";
export { createJwksKeySource, type JwksKeySource, type JwksOptions } from "./authn/jwks.js";
export { createIntrospectionVerifier, type IntrospectionOptions } from "./authn/introspection.js";
export { createTokenCache, type TokenCache, type TokenCacheOptions } from "./authn/token-cache.js";
export { discoverIssuer, type IssuerMetadata, metadataUrls } from "./authn/issuer-discovery.js";

// stores
export type { KeyRecord, KeyStore } from "./stores/key-store.js";
export { createMemoryKeyStore } from "./stores/memory-keys.js";
export { openKeyStore } from "./stores/open-key-store.js";

// gate
export { type Admission, createGate, type Gate, type GateDecision, type GateOptions } from "./gate/gate.js";

// config + gateway (for embedding the gateway in a program)
export { type GatewayConfig, loadConfigFile, validateConfig } from "./config.js";
export { type RunningGateway, startGateway } from "./gateway/assemble.js";
