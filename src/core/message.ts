import type { JsonRpcId } from "./outcome.js";

/** Longest tool or prompt name a request may carry (SEP-986 allows 128); longer is a 400. */
export const MAX_NAME_LENGTH = 512;
/** Longest resource URI or URI template a request may carry (the usual URL limit); longer is a 400. */
export const MAX_URI_LENGTH = 8192;

/** One JSON-RPC message as the gate sees it: what it is and what it names. */
export interface InspectedMessage {
  type: "request" | "notification" | "response";
  id?: JsonRpcId;
  method?: string;
  /** `params.name` for tools/call and prompts/get, `params.uri` for resources/read. */
  name?: string;
  /** `params._meta["io.modelcontextprotocol/protocolVersion"]` (2026-07-28 per-request version). */
  metaProtocolVersion?: string;
  /** The message itself, as parsed. */
  raw: Record<string, unknown>;
}
