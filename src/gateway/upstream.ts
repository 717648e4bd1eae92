import type { IncomingMessage, ServerResponse } from "node:http";
import type { Admission } from "../gate/gate.js";

/**
 * Where admitted requests go: an HTTP MCP server (undici) or a stdio child process. The gateway
 * server does everything before this point (auth, session check, policy); an upstream only relays.
 */
export interface Upstream {
  /**
   * Relay one admitted request and stream the answer to `res`. Must call `hooks.onHead` before the
   * first byte is written (session binding happens there) and must never throw after writing.
   */
  forward(ctx: ForwardContext): Promise<ForwardOutcome>;
  /**
   * Shutdown has begun: end long-lived streams (standalone GET SSE) so that only real in-flight
   * requests hold the grace period. Optional.
   */
  drain?(): void;
  close(): Promise<void>;
}

export interface ForwardContext {
  admission: Admission;
  req: IncomingMessage;
  res: ServerResponse;
  /** The body to send (may differ from the client's when batch elements were answered locally). */
  body?: string;
  /** Rejects when a newly minted session could not be bound: the upstream must then answer nothing. */
  onHead(status: number, sessionId: string | undefined): Promise<void>;
}

export interface ForwardOutcome {
  status: number;
  upstreamMs: number;
  /** "ok" or the failure class, for logs and metrics. */
  /**
   * "state_unavailable": the session the upstream just minted could not be bound (state store
   * down); nothing was sent to the client, which gets 503 (DESIGN.md principle 4).
   */
  result: "ok" | "unavailable" | "timeout" | "aborted" | "error" | "state_unavailable";
}
