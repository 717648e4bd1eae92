import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import protobuf from "protobufjs";

/**
 * A real OTLP/HTTP traces receiver for tests: `POST /v1/traces` with an
 * `ExportTraceServiceRequest` in protobuf, decoded by protobufjs against the OTLP message
 * definitions below (opentelemetry-proto: common/v1, resource/v1, trace/v1,
 * collector/trace/v1 — field numbers as the specification defines them). Answers an empty
 * `ExportTraceServiceResponse` (HTTP 200, zero bytes), as a collector does.
 */

const OTLP_PROTO = `
syntax = "proto3";
package opentelemetry.proto;

message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    KeyValueList kvlist_value = 6;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue { string key = 1; AnyValue value = 2; }
message InstrumentationScope {
  string name = 1;
  string version = 2;
  repeated KeyValue attributes = 3;
  uint32 dropped_attributes_count = 4;
}
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }

message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  fixed32 flags = 16;
  string name = 5;
  enum SpanKind {
    SPAN_KIND_UNSPECIFIED = 0;
    SPAN_KIND_INTERNAL = 1;
    SPAN_KIND_SERVER = 2;
    SPAN_KIND_CLIENT = 3;
    SPAN_KIND_PRODUCER = 4;
    SPAN_KIND_CONSUMER = 5;
  }
  SpanKind kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  uint32 dropped_attributes_count = 10;
  message Event {
    fixed64 time_unix_nano = 1;
    string name = 2;
    repeated KeyValue attributes = 3;
    uint32 dropped_attributes_count = 4;
  }
  repeated Event events = 11;
  uint32 dropped_events_count = 12;
  message Link {
    bytes trace_id = 1;
    bytes span_id = 2;
    string trace_state = 3;
    repeated KeyValue attributes = 4;
    uint32 dropped_attributes_count = 5;
    fixed32 flags = 6;
  }
  repeated Link links = 13;
  uint32 dropped_links_count = 14;
  Status status = 15;
}
message Status {
  reserved 1;
  string message = 2;
  enum StatusCode { STATUS_CODE_UNSET = 0; STATUS_CODE_OK = 1; STATUS_CODE_ERROR = 2; }
  StatusCode code = 3;
}
`;

const root = protobuf.parse(OTLP_PROTO, { keepCase: true }).root;
const ExportRequest = root.lookupType("opentelemetry.proto.ExportTraceServiceRequest");

/** A span as the receiver got it. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: "UNSPECIFIED" | "INTERNAL" | "SERVER" | "CLIENT" | "PRODUCER" | "CONSUMER";
  attributes: Record<string, unknown>;
  events: Array<{ name: string; attributes: Record<string, unknown> }>;
  status: { code: "UNSET" | "OK" | "ERROR"; message: string };
  resource: Record<string, unknown>;
  scope: string;
  durationMs: number;
}

export interface OtlpReceiver {
  /** Base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT` / `tracing.endpoint` (`/v1/traces` is appended). */
  url: string;
  spans: ReceivedSpan[];
  /** Every export request body as received (after gunzip), for leak checks on the raw bytes. */
  bodies: Buffer[];
  /** Content types of the export requests (protobuf expected). */
  contentTypes: string[];
  /** Wait until `predicate` holds over the received spans (polls; bounded by `timeoutMs`). */
  waitFor(predicate: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Every string value in every span, event, resource and scope received (the leak test's haystack). */
  allStrings(): string[];
  close(): Promise<void>;
}

type Json = { [k: string]: unknown };

function anyValue(v: Json | undefined): unknown {
  if (!v) return undefined;
  if ("string_value" in v) return v.string_value;
  if ("bool_value" in v) return v.bool_value;
  if ("int_value" in v) return Number(v.int_value);
  if ("double_value" in v) return v.double_value;
  if ("bytes_value" in v) return Buffer.from(v.bytes_value as string, "base64").toString("hex");
  if ("array_value" in v) return ((v.array_value as Json).values as Json[] | undefined)?.map(anyValue) ?? [];
  if ("kvlist_value" in v) return attrs((v.kvlist_value as Json).values as Json[] | undefined);
  return undefined;
}

function attrs(list: Json[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of list ?? []) out[kv.key as string] = anyValue(kv.value as Json | undefined);
  return out;
}

const hex = (b64: unknown) => (typeof b64 === "string" ? Buffer.from(b64, "base64").toString("hex") : "");

function flatten(request: Json): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of (request.resource_spans as Json[] | undefined) ?? []) {
    const resource = attrs(((rs.resource as Json | undefined)?.attributes as Json[] | undefined) ?? []);
    for (const ss of (rs.scope_spans as Json[] | undefined) ?? []) {
      const scope = ((ss.scope as Json | undefined)?.name as string | undefined) ?? "";
      for (const s of (ss.spans as Json[] | undefined) ?? []) {
        const status = (s.status as Json | undefined) ?? {};
        const start = BigInt((s.start_time_unix_nano as string | undefined) ?? "0");
        const end = BigInt((s.end_time_unix_nano as string | undefined) ?? "0");
        out.push({
          traceId: hex(s.trace_id),
          spanId: hex(s.span_id),
          parentSpanId: hex(s.parent_span_id),
          traceState: (s.trace_state as string | undefined) ?? "",
          name: s.name as string,
          kind: String(s.kind ?? "SPAN_KIND_UNSPECIFIED").replace("SPAN_KIND_", "") as ReceivedSpan["kind"],
          attributes: attrs(s.attributes as Json[] | undefined),
          events: ((s.events as Json[] | undefined) ?? []).map((e) => ({
            name: e.name as string,
            attributes: attrs(e.attributes as Json[] | undefined),
          })),
          status: {
            code: String(status.code ?? "STATUS_CODE_UNSET").replace(
              "STATUS_CODE_",
              "",
            ) as ReceivedSpan["status"]["code"],
            message: (status.message as string | undefined) ?? "",
          },
          resource,
          scope,
          durationMs: Number(end - start) / 1e6,
        });
      }
    }
  }
  return out;
}

function collectStrings(value: unknown, into: string[]): void {
  if (typeof value === "string") into.push(value);
  else if (Array.isArray(value)) for (const v of value) collectStrings(v, into);
  else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      into.push(k);
      collectStrings(v, into);
    }
  }
}

const MAX_BODY = 16 * 1024 * 1024;

/**
 * Start a receiver on 127.0.0.1 (a free port).
 *
 * @example const otlp = await startOtlpReceiver(); env.OTEL_EXPORTER_OTLP_ENDPOINT = otlp.url;
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const bodies: Buffer[] = [];
  const contentTypes: string[] = [];
  const server: Server = createServer((req, res) => {
    if (req.method !== "POST" || req.url !== "/v1/traces") {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on("end", () => {
      try {
        let body = Buffer.concat(chunks);
        if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
        contentTypes.push(String(req.headers["content-type"]));
        bodies.push(body);
        const decoded = ExportRequest.toObject(ExportRequest.decode(body), {
          longs: String,
          enums: String,
          bytes: String,
          oneofs: false,
        }) as Json;
        spans.push(...flatten(decoded));
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    bodies,
    contentTypes,
    async waitFor(predicate, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(spans)) {
        if (Date.now() > deadline) {
          throw new Error(
            `OTLP receiver: condition not met in ${timeoutMs} ms (${spans.length} spans: ${spans.map((s) => s.name).join(", ")})`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      return spans;
    },
    allStrings() {
      const out: string[] = [];
      collectStrings(spans, out);
      return out;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
