/** Re-exported from core/contracts.ts (kept for the gate's own imports). */
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
} from "../core/contracts.js";
