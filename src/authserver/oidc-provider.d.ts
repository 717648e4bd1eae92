// The surface of oidc-provider (which ships no types) that mcpgate and its tests use.
declare module "oidc-provider" {
  import type { IncomingMessage, ServerResponse } from "node:http";

  export interface InteractionDetails {
    uid: string;
    prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
    params: Record<string, unknown>;
    session?: { accountId?: string; uid?: string };
    grantId?: string;
    returnTo: string;
    lastSubmission?: Record<string, unknown>;
  }

  export interface ProviderGrant {
    jti: string;
    accountId: string;
    clientId: string;
    addOIDCScope(scope: string): void;
    addResourceScope(resource: string, scope: string): void;
    save(ttlSec?: number): Promise<string>;
  }

  export interface ProviderClient {
    clientId: string;
    clientName?: string;
    redirectUris?: string[];
    clientUri?: string;
  }

  export interface ProviderContext {
    ip?: string;
    /** Koa's: the method and path the provider's router matches (the path parsed by Koa). */
    method?: string;
    path?: string;
    req?: IncomingMessage;
    res?: ServerResponse;
    /** Set false when a middleware has written the response itself. */
    respond?: boolean;
    oidc?: {
      route?: string;
      params?: Record<string, unknown>;
      session?: { accountId?: string };
      entities?: Record<string, { accountId?: string } | undefined>;
      client?: ProviderClient;
    };
  }

  export default class Provider {
    constructor(issuer: string, configuration?: Record<string, unknown>);
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    on(event: string, listener: (...args: unknown[]) => void): this;
    /** Koa middleware around the provider's routes (runs before its router). */
    use(fn: (ctx: ProviderContext, next: () => Promise<void>) => Promise<void>): this;
    proxy: boolean;
    readonly issuer: string;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: Record<string, unknown>,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    Grant: {
      new (init: { accountId: string; clientId: string }): ProviderGrant;
      find(id: string): Promise<ProviderGrant | undefined>;
    };
    Client: { find(id: string): Promise<ProviderClient | undefined> };
  }

  export const errors: {
    InvalidTarget: new (description?: string) => Error;
    InvalidClientMetadata: new (description?: string) => Error;
    InvalidRedirectUri: new (description?: string) => Error;
  };
}
