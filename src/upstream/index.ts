/**
 * `mcpgate/upstream`: for an MCP server that sits behind the gateway (DESIGN.md §9). Loads jose and
 * the SDK's auth errors only.
 */

export { IDENTITY_ASSERTION_TYP, type IdentityAssertionClaims } from "../core/assertion.js";
export {
  type GatewayAssertionOptions,
  type GatewayAssertionVerifier,
  type GatewayCaller,
  verifyGatewayAssertion,
} from "./verify-assertion.js";
