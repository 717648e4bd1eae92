import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Monitor, MonitorSnapshot, TargetStatus } from "./monitor.js";

const STATE_WORDS: Record<TargetStatus["status"], string> = {
  up: "Up",
  auth_rejected: "Key rejected",
  server_error: "Server error",
  timeout: "Timing out",
  unreachable: "Unreachable",
  protocol_error: "Not speaking MCP",
  pending: "Not checked yet",
};

/** Escape for HTML text and double-quoted attributes. */
function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function ago(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172_800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86_400)} d ago`;
}

function pct(v: number | null): string {
  return v === null ? "–" : `${v === 100 || v === 0 ? v : v.toFixed(2)} %`;
}

/**
 * The latency of the last 24 h as an inline SVG: a line through up checks, red ticks for failed ones.
 * No script, no external resource; the `<title>` makes it readable to screen readers.
 */
export function renderLatencyChart(t: TargetStatus, now: number): string {
  const W = 600;
  const H = 120;
  const pad = 4;
  const dayAgo = now - 86_400_000;
  const points = t.latency.filter((p) => p.at >= dayAgo);
  // A young history is spread over the width (with a margin of one interval) instead of a sliver at the right edge.
  const from = Math.max(dayAgo, (points[0]?.at ?? dayAgo) - t.intervalMs);
  const span = Math.max(1, now - from);
  const max = Math.max(50, ...points.filter((p) => p.status === "up").map((p) => p.latencyMs));
  const x = (at: number) => (pad + ((at - from) / span) * (W - 2 * pad)).toFixed(1);
  const y = (ms: number) => (H - pad - (ms / max) * (H - 2 * pad)).toFixed(1);
  const up = points.filter((p) => p.status === "up");
  const line = up.map((p) => `${x(p.at)},${y(p.latencyMs)}`).join(" ");
  const downs = points
    .filter((p) => p.status !== "up")
    .map((p) => `<line x1="${x(p.at)}" x2="${x(p.at)}" y1="${pad}" y2="${H - pad}" class="down"/>`)
    .join("");
  const dots =
    up.length === 1 ? `<circle cx="${x(up[0]!.at)}" cy="${y(up[0]!.latencyMs)}" r="3" class="dot"/>` : "";
  const label = `Latency of ${t.name} over the last ${from === dayAgo ? "24 hours" : ago(from, now).replace(" ago", "")}: ${points.length} checks, ${points.length - up.length} failed, highest ${Math.round(max)} ms`;
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" aria-label="${esc(label)}">
<title>${esc(label)}</title>
<line x1="${pad}" x2="${W - pad}" y1="${H - pad}" y2="${H - pad}" class="axis"/>
${downs}${line ? `<polyline points="${line}" class="line"/>` : ""}${dots}
</svg>
<div class="scale"><span>${from === dayAgo ? "24 h ago" : esc(ago(from, now))}</span><span>max ${Math.round(max)} ms</span><span>now</span></div>`;
}

function renderTarget(t: TargetStatus, now: number): string {
  const state = t.status === "up" ? "up" : t.status === "pending" ? "pending" : "down";
  const facts: Array<[string, string]> = [
    ["Uptime 24 h", pct(t.uptime24h)],
    ["Uptime 7 d", pct(t.uptime7d)],
    ["Latency", t.latencyMs === null ? "–" : `${Math.round(t.latencyMs)} ms`],
    ["Checked", t.lastCheckedAt === null ? "never" : ago(t.lastCheckedAt, now)],
    ["Tools", t.tools === null ? "–" : `${t.tools} (schema ${t.schemaHash?.slice(0, 8) ?? "–"})`],
    ["Challenge", (t.steps[0]?.httpStatus ?? 0) > 0 ? (t.challenge ?? "–") : "–"],
  ];
  if (t.certExpiresAt !== null) {
    facts.push(["TLS certificate", `expires ${new Date(t.certExpiresAt).toISOString().slice(0, 10)}`]);
  }
  const events = t.events.length
    ? `<ul class="events">${t.events
        .map(
          (e) =>
            `<li class="ev-${esc(e.kind)}"><time datetime="${new Date(e.at).toISOString()}">${esc(ago(e.at, now))}</time> ${esc(e.message)}</li>`,
        )
        .join("")}</ul>`
    : `<p class="quiet">No events.</p>`;
  return `<section class="target ${state}" id="target-${esc(t.name.replace(/\s+/g, "-"))}" data-status="${esc(t.status)}">
<h2><span class="badge">${esc(STATE_WORDS[t.status])}</span> ${esc(t.name)}</h2>
<p class="url">${esc(t.url)}</p>
${t.error ? `<p class="error"><strong>Last error:</strong> ${esc(t.error)}</p>` : ""}
<dl>${facts.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(v)}</dd></div>`).join("")}</dl>
${renderLatencyChart(t, now)}
<h3>Events</h3>
${events}
</section>`;
}

/**
 * The status page: server-rendered HTML with inline CSS and SVG, readable without JavaScript and on
 * a phone. It refreshes itself with `<meta http-equiv="refresh">`.
 *
 * @example res.end(renderStatusPage(await monitor.snapshot()));
 */
export function renderStatusPage(snapshot: MonitorSnapshot, options: { refreshSec?: number } = {}): string {
  const now = snapshot.generatedAt;
  const down = snapshot.targets.filter((t) => t.status !== "up" && t.status !== "pending").length;
  const summary = down === 0 ? "All endpoints up" : `${down} of ${snapshot.targets.length} endpoints down`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="${options.refreshSec ?? 30}">
<title>${esc(summary)} · mcpgate monitor</title>
<style>
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--wait:#9a6700;--muted:#6e7781}
body{font:16px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:960px;padding:12px}
header h1{font-size:1.4rem;margin:.2em 0}
.target{border:1px solid #8885;border-left:6px solid var(--muted);border-radius:8px;padding:12px;margin:14px 0}
.target.up{border-left-color:var(--ok)}.target.down{border-left-color:var(--bad)}.target.pending{border-left-color:var(--wait)}
h2{font-size:1.15rem;margin:0 0 4px}h3{font-size:1rem;margin:12px 0 4px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;background:var(--muted);font-size:.9rem}
.up .badge{background:var(--ok)}.down .badge{background:var(--bad)}.pending .badge{background:var(--wait)}
.url{color:var(--muted);word-break:break-all;margin:0 0 6px;font-size:.9rem}
.error{color:var(--bad);overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:6px;margin:8px 0}
dl div{background:#8881;border-radius:6px;padding:4px 8px}dt{font-size:.8rem;color:var(--muted)}dd{margin:0}
.chart{width:100%;height:120px;display:block;background:#8881;border-radius:6px}
.chart .line{fill:none;stroke:#0969da;stroke-width:2;vector-effect:non-scaling-stroke}
.chart .down{stroke:var(--bad);stroke-width:2;vector-effect:non-scaling-stroke;opacity:.7}
.chart .axis{stroke:#8888;vector-effect:non-scaling-stroke}.chart .dot{fill:#0969da}
.scale{display:flex;justify-content:space-between;font-size:.75rem;color:var(--muted)}
.events{padding-left:1.2em;margin:4px 0}.events li{margin:2px 0;overflow-wrap:anywhere}
.events time{color:var(--muted);font-size:.85rem}.ev-schema_drift{color:var(--wait)}
.quiet{color:var(--muted);margin:4px 0}footer{color:var(--muted);font-size:.8rem;margin:20px 0}
</style>
</head>
<body>
<header><h1>${esc(summary)}</h1><p class="quiet">Generated ${esc(new Date(now).toISOString().replace("T", " ").slice(0, 19))} UTC · <a href="/api/status">JSON</a> · <a href="/metrics">metrics</a></p></header>
<main>
${snapshot.targets.map((t) => renderTarget(t, now)).join("\n")}
</main>
<footer>mcpgate monitor · probes through the real MCP path with a read-only key</footer>
</body>
</html>
`;
}

/** A listening status server. */
export interface StatusServer {
  server: Server;
  /** Base URL, e.g. http://127.0.0.1:9470/ */
  url: string;
  close(): Promise<void>;
}

/**
 * Serve `/` (status page), `/api/status` (JSON) and `/metrics` (Prometheus) for a monitor.
 *
 * @example
 * const status = await startStatusServer(monitor, { host: "127.0.0.1", port: 9470 });
 */
export async function startStatusServer(
  monitor: Monitor,
  listen: { host: string; port: number },
): Promise<StatusServer> {
  const server = createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const headers = { "cache-control": "no-store", "x-content-type-options": "nosniff" };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { ...headers, allow: "GET, HEAD" }).end();
      return;
    }
    try {
      if (path === "/" || path === "/index.html") {
        const html = renderStatusPage(await monitor.snapshot());
        res.writeHead(200, {
          ...headers,
          "content-type": "text/html; charset=utf-8",
          // No script at all; inline styles only.
          "content-security-policy":
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        });
        res.end(req.method === "HEAD" ? undefined : html);
      } else if (path === "/api/status") {
        res.writeHead(200, { ...headers, "content-type": "application/json" });
        res.end(JSON.stringify(await monitor.snapshot()));
      } else if (path === "/metrics") {
        res.writeHead(200, { ...headers, "content-type": monitor.metrics.registry.contentType });
        res.end(await monitor.metrics.registry.metrics());
      } else if (path === "/healthz") {
        res.writeHead(200, { ...headers, "content-type": "text/plain" }).end("ok\n");
      } else {
        res.writeHead(404, { ...headers, "content-type": "text/plain" }).end("not found\n");
      }
    } catch {
      if (!res.headersSent) res.writeHead(500, { ...headers, "content-type": "text/plain" });
      res.end("status unavailable\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `http://${host}:${addr.port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
