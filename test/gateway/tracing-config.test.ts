import { describe, expect, it } from "vitest";
import { validateConfig } from "../../src/config.js";
import { resolveTracing } from "../../src/gateway/tracing-config.js";

const BASE = { upstream: { url: "http://127.0.0.1:3000/mcp" } };
const section = (tracing: unknown) => validateConfig({ ...BASE, tracing }, null).tracing;

describe("tracing: on or off", () => {
  it("is off with neither a tracing section nor OTEL_* variables", () => {
    expect(resolveTracing(validateConfig(BASE, null).tracing, {})).toBeUndefined();
  });

  it.each([
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
  ])("is on when %s is set", (name) => {
    const value =
      name === "OTEL_TRACES_SAMPLER"
        ? "always_on"
        : name.includes("ENDPOINT")
          ? "http://127.0.0.1:4318"
          : "svc";
    expect(resolveTracing(undefined, { [name]: value })).toBeDefined();
  });

  it("is on with a tracing section alone, sending to the OTLP/HTTP default", () => {
    expect(resolveTracing(section({}), {})).toMatchObject({
      url: "http://localhost:4318/v1/traces",
      serviceName: "mcpgate",
      sampler: "parentbased_always_on",
      ratio: 1,
    });
  });

  it("is off when tracing.enabled is false, whatever the environment says", () => {
    expect(
      resolveTracing(section({ enabled: false }), { OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318" }),
    ).toBeUndefined();
  });

  it("is off with OTEL_SDK_DISABLED=true, and with OTEL_TRACES_EXPORTER=none without a section", () => {
    expect(resolveTracing(section({}), { OTEL_SDK_DISABLED: "true" })).toBeUndefined();
    expect(
      resolveTracing(undefined, { OTEL_SERVICE_NAME: "svc", OTEL_TRACES_EXPORTER: "none" }),
    ).toBeUndefined();
  });

  it("ignores empty variables", () => {
    expect(resolveTracing(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: "  " })).toBeUndefined();
  });
});

describe("tracing: the file wins, the environment fills in", () => {
  it("builds the traces URL from a base endpoint, and takes the traces endpoint as it is", () => {
    expect(resolveTracing(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/" })?.url).toBe(
      "http://c:4318/v1/traces",
    );
    expect(
      resolveTracing(undefined, {
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://t:9999/custom",
      })?.url,
    ).toBe("http://t:9999/custom");
    expect(
      resolveTracing(section({ endpoint: "https://otel.example.com/base" }), {
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://t:9999/custom",
      })?.url,
    ).toBe("https://otel.example.com/base/v1/traces");
  });

  it("takes the service name from the file, then OTEL_SERVICE_NAME", () => {
    expect(resolveTracing(section({ serviceName: "gw" }), { OTEL_SERVICE_NAME: "env" })?.serviceName).toBe(
      "gw",
    );
    expect(resolveTracing(section({}), { OTEL_SERVICE_NAME: "env" })?.serviceName).toBe("env");
  });

  it("reads the sampler and its ratio from OTEL_TRACES_SAMPLER(_ARG); a ratio alone means parent-based", () => {
    expect(
      resolveTracing(undefined, { OTEL_TRACES_SAMPLER: "TraceIdRatio", OTEL_TRACES_SAMPLER_ARG: "0.25" }),
    ).toMatchObject({ sampler: "traceidratio", ratio: 0.25, warnings: [] });
    expect(resolveTracing(section({ sampleRatio: 0.1 }), {})).toMatchObject({
      sampler: "parentbased_traceidratio",
      ratio: 0.1,
    });
    expect(
      resolveTracing(section({ sampler: "always_off" }), { OTEL_TRACES_SAMPLER: "always_on" })?.sampler,
    ).toBe("always_off");
  });

  it("warns about sampler values it cannot use and falls back to the default", () => {
    const r = resolveTracing(undefined, {
      OTEL_TRACES_SAMPLER: "jaeger_remote",
      OTEL_TRACES_SAMPLER_ARG: "2",
      OTEL_BSP_SCHEDULE_DELAY: "soon",
    });
    expect(r).toMatchObject({ sampler: "parentbased_always_on", ratio: 1, scheduleDelayMs: 5000 });
    expect(r?.warnings).toHaveLength(3);
  });

  it("passes export headers and resource attributes from the file", () => {
    expect(
      resolveTracing(
        section({
          headers: { "x-api-key": "k" },
          resourceAttributes: { "deployment.environment.name": "prod" },
        }),
        {},
      ),
    ).toMatchObject({
      headers: { "x-api-key": "k" },
      resourceAttributes: { "deployment.environment.name": "prod" },
    });
  });
});

describe("tracing: the schema refuses", () => {
  it.each([
    [{ endpoint: "not a url" }, "tracing.endpoint"],
    [{ endpoint: "ftp://c:4318" }, "tracing.endpoint"],
    [{ sampleRatio: 1.5 }, "tracing.sampleRatio"],
    [{ sampler: "sometimes" }, "tracing.sampler"],
    [{ exporter: "zipkin" }, "tracing"],
  ])("%j", (tracing, field) => {
    expect(() => validateConfig({ ...BASE, tracing }, null)).toThrow(field);
  });
});
