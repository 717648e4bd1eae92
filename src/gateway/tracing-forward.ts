import type { ForwardResult } from "../http/front-door.js";
import { tracingDisabled } from "../observe/tracing.js";
import { startUpstreamSpan } from "../observe/tracing-upstream.js";
import type { ForwardContext } from "./upstream.js";

/** The upstream of one mount, as its CLIENT span names it. */
export interface TracedUpstream {
  /** The mount's name (`upstreams[].name`, or `default`). */
  name: string;
  transport: "http" | "stdio";
  /** HTTP upstreams: their URL (userinfo and query never reach the span). */
  url?: string | undefined;
}

/**
 * The mount's `aroundForward` hook for tracing (docs/tracing.md): every forward is a CLIENT span,
 * child of the request's span, and the upstream receives that span's W3C context — HTTP upstreams
 * as `traceparent`/`tracestate` headers, stdio upstreams in `params._meta` of every forwarded
 * message (the MCP place for trace context where there are no headers). A client's own values are
 * replaced: the upstream's parent is the gateway's call. Without an SDK it only calls `next`.
 *
 * @example mount.aroundForward = traceForward({ name: "notes", transport: "http", url });
 */
export function traceForward(upstream: TracedUpstream) {
  return async (
    ctx: ForwardContext,
    next: (ctx: ForwardContext) => Promise<ForwardResult>,
  ): Promise<ForwardResult> => {
    if (tracingDisabled()) return next(ctx);
    const up = startUpstreamSpan({
      upstream: upstream.name,
      transport: upstream.transport,
      url: upstream.url,
      mcpMethod: ctx.plan.forward.find((m) => m.method !== undefined)?.method,
      tool: ctx.plan.forward.find((m) => m.method === "tools/call")?.name,
    });
    if (upstream.transport === "http") up.inject(ctx.headers);
    else Object.assign(ctx.meta, up.metaFields());
    try {
      const result = await up.run(() => next(ctx));
      up.end({
        status: ctx.owner.status || undefined,
        error: result.result !== "ok" ? `upstream_${result.result}` : undefined,
      });
      return result;
    } catch (err) {
      up.end({ error: "upstream_error" });
      throw err;
    }
  };
}
