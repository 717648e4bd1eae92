import type { ForwardResult } from "../http/front-door.js";
import { startUpstreamSpan } from "../observe/tracing-upstream.js";
import type { ForwardContext } from "./upstream.js";

/** The upstream of one mount, as its CLIENT span names it. */
export interface TracedUpstream {
  /** The mount's name (`upstreams[].name`, or `default`). */
  name: string;
  transport: "http" | "stdio";
  /** HTTP upstreams: their URL (userinfo and query never reach the span). */
  url?: string;
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
    const first = ctx.plan.forward.find((m) => m.method !== undefined);
    const tool = ctx.plan.forward.find((m) => m.method === "tools/call")?.name;
    const up = startUpstreamSpan({
      upstream: upstream.name,
      transport: upstream.transport,
      ...(upstream.url ? { url: upstream.url } : {}),
      ...(first?.method ? { mcpMethod: first.method } : {}),
      ...(tool ? { tool } : {}),
    });
    if (upstream.transport === "http") up.inject(ctx.headers);
    else Object.assign(ctx.meta, up.metaFields());
    try {
      const result = await up.run(() => next(ctx));
      const status = ctx.owner.status || undefined;
      up.end({
        ...(status !== undefined ? { status } : {}),
        ...(result.result !== "ok" ? { error: `upstream_${result.result}` } : {}),
      });
      return result;
    } catch (err) {
      up.end({ error: "upstream_error" });
      throw err;
    }
  };
}
