/**
 * The MCP server that the official conformance suite (`@modelcontextprotocol/conformance` 0.1.16)
 * expects: every `test_*` tool, resource and prompt its server scenarios call, built with the
 * official 1.x SDK (the scenarios speak 2025-06-18 / 2025-11-25, which the 1.x SDK covers).
 *
 * Run: `npx tsx test/conformance/fixture-server.ts --port 0` (or `FIXTURE_PORT=0`). It binds
 * 127.0.0.1 only and prints one JSON line `{"url":"http://127.0.0.1:<port>/mcp"}` on stdout when
 * it is listening, which is how `run.ts` finds it.
 *
 * Design notes:
 * - Stateful Streamable HTTP (one McpServer + transport per `Mcp-Session-Id`), with an in-memory
 *   event store so `test_reconnection` can close its SSE stream mid-call and the client can resume
 *   with `Last-Event-ID` (SEP-1699).
 * - Tools are served from one table with literal JSON Schemas through the low-level handlers,
 *   because the 1.x `registerTool` always emits draft-07 and the `json-schema-2020-12` scenario
 *   checks that `$schema`, `$defs` and `additionalProperties` reach the client untouched.
 * - Resources, prompts and completion use `McpServer.registerResource/registerPrompt`.
 * - `createMcpExpressApp({ host: "127.0.0.1" })` validates the Host header (DNS rebinding).
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { completable } from "@modelcontextprotocol/sdk/server/completable.js";
import { createMcpExpressApp } from "@modelcontextprotocol/sdk/server/express.js";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import {
  type EventStore,
  StreamableHTTPServerTransport,
} from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  CallToolRequestSchema,
  type CallToolResult,
  CreateMessageResultSchema,
  ElicitResultSchema,
  ErrorCode,
  isInitializeRequest,
  type JSONRPCMessage,
  ListToolsRequestSchema,
  McpError,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import type { Request, Response } from "express";
import * as z from "zod";

/** A 1x1 red PNG. */
const PNG_1X1 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/** A valid 8 kHz mono 16-bit PCM WAV holding 8 samples of silence. */
function tinyWav(): string {
  const samples = 8;
  const data = Buffer.alloc(samples * 2);
  const header = Buffer.alloc(44);
  header.write("RIFF", 0, "ascii");
  header.writeUInt32LE(36 + data.length, 4);
  header.write("WAVE", 8, "ascii");
  header.write("fmt ", 12, "ascii");
  header.writeUInt32LE(16, 16); // fmt chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(8000, 24); // sample rate
  header.writeUInt32LE(16000, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write("data", 36, "ascii");
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]).toString("base64");
}
const WAV_SILENCE = tinyWav();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** In-memory event store: enough for SSE resumption within one fixture process. */
class MemoryEventStore implements EventStore {
  private readonly events = new Map<string, { streamId: string; message: JSONRPCMessage }>();
  private counter = 0;

  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    // Zero-padded counter keeps ids ordered; the stream id is kept in the map, not parsed back.
    const eventId = `${String(++this.counter).padStart(10, "0")}_${streamId}`;
    this.events.set(eventId, { streamId, message });
    return eventId;
  }

  async getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    return this.events.get(eventId)?.streamId;
  }

  async replayEventsAfter(
    lastEventId: string,
    { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> },
  ): Promise<string> {
    const last = this.events.get(lastEventId);
    if (!last) throw new Error("unknown Last-Event-ID");
    let after = false;
    for (const [id, event] of this.events) {
      if (id === lastEventId) {
        after = true;
        continue;
      }
      if (after && event.streamId === last.streamId) await send(id, event.message);
    }
    return last.streamId;
  }
}

type Extra = Parameters<Parameters<McpServer["server"]["setRequestHandler"]>[1]>[1];

interface FixtureTool {
  name: string;
  description: string;
  inputSchema: { type: "object"; [key: string]: unknown };
  run: (args: Record<string, unknown>, extra: Extra, mcp: McpServer) => Promise<CallToolResult>;
}

const NO_ARGS = { type: "object", properties: {} } as const;
const text = (value: string): CallToolResult => ({ content: [{ type: "text", text: value }] });

function clientSupports(mcp: McpServer, capability: "sampling" | "elicitation"): boolean {
  return mcp.server.getClientCapabilities()?.[capability] !== undefined;
}

async function elicit(extra: Extra, message: string, requestedSchema: Record<string, unknown>) {
  return extra.sendRequest(
    { method: "elicitation/create", params: { message, requestedSchema } } as never,
    ElicitResultSchema,
  );
}

const TOOLS: FixtureTool[] = [
  {
    name: "test_simple_text",
    description: "Returns a simple text response",
    inputSchema: NO_ARGS,
    run: async () => text("This is a simple text response for testing."),
  },
  {
    name: "test_image_content",
    description: "Returns a 1x1 PNG image",
    inputSchema: NO_ARGS,
    run: async () => ({ content: [{ type: "image", data: PNG_1X1, mimeType: "image/png" }] }),
  },
  {
    name: "test_audio_content",
    description: "Returns a tiny WAV clip",
    inputSchema: NO_ARGS,
    run: async () => ({ content: [{ type: "audio", data: WAV_SILENCE, mimeType: "audio/wav" }] }),
  },
  {
    name: "test_embedded_resource",
    description: "Returns an embedded text resource",
    inputSchema: NO_ARGS,
    run: async () => ({
      content: [
        {
          type: "resource",
          resource: {
            uri: "test://embedded-resource",
            mimeType: "text/plain",
            text: "This is an embedded resource content.",
          },
        },
      ],
    }),
  },
  {
    name: "test_multiple_content_types",
    description: "Returns text, image and resource content together",
    inputSchema: NO_ARGS,
    run: async () => ({
      content: [
        { type: "text", text: "Multiple content types test:" },
        { type: "image", data: PNG_1X1, mimeType: "image/png" },
        {
          type: "resource",
          resource: {
            uri: "test://mixed-content-resource",
            mimeType: "application/json",
            text: JSON.stringify({ test: "data", value: 123 }),
          },
        },
      ],
    }),
  },
  {
    name: "test_tool_with_logging",
    description: "Sends three info log notifications while it runs",
    inputSchema: NO_ARGS,
    run: async (_args, extra) => {
      const log = (data: string) =>
        extra.sendNotification({
          method: "notifications/message",
          params: { level: "info", logger: "fixture", data },
        });
      await log("Tool execution started");
      await sleep(50);
      await log("Tool processing data");
      await sleep(50);
      await log("Tool execution completed");
      return text("Tool with logging executed successfully");
    },
  },
  {
    name: "test_error_handling",
    description: "Always fails with a tool error",
    inputSchema: NO_ARGS,
    run: async () => ({
      isError: true,
      content: [{ type: "text", text: "This tool intentionally returns an error for testing" }],
    }),
  },
  {
    name: "test_tool_with_progress",
    description: "Reports progress 0, 50 and 100 of 100",
    inputSchema: NO_ARGS,
    run: async (_args, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken, progress, total: 100, message: `step ${progress}` },
          });
        }
        if (progress < 100) await sleep(50);
      }
      return text("Tool with progress completed");
    },
  },
  {
    name: "test_sampling",
    description: "Asks the client's LLM to answer a prompt (sampling/createMessage)",
    inputSchema: {
      type: "object",
      properties: { prompt: { type: "string", description: "The prompt to send to the LLM" } },
      required: ["prompt"],
    },
    run: async (args, extra, mcp) => {
      if (!clientSupports(mcp, "sampling")) {
        return { isError: true, content: [{ type: "text", text: "Client does not support sampling" }] };
      }
      const result = await extra.sendRequest(
        {
          method: "sampling/createMessage",
          params: {
            messages: [{ role: "user", content: { type: "text", text: String(args.prompt ?? "") } }],
            maxTokens: 100,
          },
        },
        CreateMessageResultSchema,
      );
      const answer = result.content.type === "text" ? result.content.text : JSON.stringify(result.content);
      return text(`LLM response: ${answer}`);
    },
  },
  {
    name: "test_elicitation",
    description: "Asks the user for a username and an email (elicitation/create)",
    inputSchema: {
      type: "object",
      properties: { message: { type: "string", description: "The message to show the user" } },
      required: ["message"],
    },
    run: async (args, extra, mcp) => {
      if (!clientSupports(mcp, "elicitation")) {
        return { isError: true, content: [{ type: "text", text: "Client does not support elicitation" }] };
      }
      const result = await elicit(extra, String(args.message ?? ""), {
        type: "object",
        properties: {
          username: { type: "string", description: "User's response" },
          email: { type: "string", description: "User's email address" },
        },
        required: ["username", "email"],
      });
      return text(`User response: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`);
    },
  },
  {
    name: "test_elicitation_sep1034_defaults",
    description: "Elicitation whose schema carries a default for every primitive type (SEP-1034)",
    inputSchema: NO_ARGS,
    run: async (_args, extra) => {
      const result = await elicit(extra, "Please confirm your details", {
        type: "object",
        properties: {
          name: { type: "string", description: "User name", default: "John Doe" },
          age: { type: "integer", description: "User age", default: 30 },
          score: { type: "number", description: "User score", default: 95.5 },
          status: {
            type: "string",
            description: "User status",
            enum: ["active", "inactive", "pending"],
            default: "active",
          },
          verified: { type: "boolean", description: "Verification status", default: true },
        },
      });
      return text(
        `Elicitation completed: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`,
      );
    },
  },
  {
    name: "test_elicitation_sep1330_enums",
    description: "Elicitation using the five enum schema variants (SEP-1330)",
    inputSchema: NO_ARGS,
    run: async (_args, extra) => {
      const result = await elicit(extra, "Please pick some options", {
        type: "object",
        properties: {
          untitledSingle: { type: "string", enum: ["option1", "option2", "option3"] },
          titledSingle: {
            type: "string",
            oneOf: [
              { const: "value1", title: "First Option" },
              { const: "value2", title: "Second Option" },
              { const: "value3", title: "Third Option" },
            ],
          },
          legacyEnum: {
            type: "string",
            enum: ["opt1", "opt2", "opt3"],
            enumNames: ["Option One", "Option Two", "Option Three"],
          },
          untitledMulti: {
            type: "array",
            items: { type: "string", enum: ["option1", "option2", "option3"] },
          },
          titledMulti: {
            type: "array",
            items: {
              anyOf: [
                { const: "value1", title: "First Choice" },
                { const: "value2", title: "Second Choice" },
                { const: "value3", title: "Third Choice" },
              ],
            },
          },
        },
      });
      return text(
        `Elicitation completed: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`,
      );
    },
  },
  {
    name: "json_schema_2020_12_tool",
    description: "Tool with JSON Schema 2020-12 features",
    inputSchema: {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      $defs: {
        address: {
          type: "object",
          properties: { street: { type: "string" }, city: { type: "string" } },
        },
      },
      properties: { name: { type: "string" }, address: { $ref: "#/$defs/address" } },
      additionalProperties: false,
    },
    run: async (args) => text(`Received: ${JSON.stringify(args)}`),
  },
  {
    name: "test_reconnection",
    description: "Closes its SSE stream mid-call so the client must resume with Last-Event-ID (SEP-1699)",
    inputSchema: NO_ARGS,
    run: async (_args, extra) => {
      await sleep(50);
      // Only present when the transport has an event store (resumability is opt-in).
      extra.closeSSEStream?.();
      await sleep(300);
      return text("Reconnection test completed successfully");
    },
  },
];

function registerTools(mcp: McpServer): void {
  const byName = new Map(TOOLS.map((tool) => [tool.name, tool]));
  mcp.server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: TOOLS.map(({ name, description, inputSchema }) => ({ name, description, inputSchema })),
  }));
  mcp.server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const tool = byName.get(request.params.name);
    if (!tool) throw new McpError(ErrorCode.InvalidParams, `Tool ${request.params.name} not found`);
    return tool.run(request.params.arguments ?? {}, extra, mcp);
  });
}

function registerResources(mcp: McpServer, subscriptions: Set<string>): void {
  mcp.registerResource(
    "static-text",
    "test://static-text",
    { description: "A static text resource", mimeType: "text/plain" },
    async (uri) => ({
      contents: [
        { uri: uri.href, mimeType: "text/plain", text: "This is the content of the static text resource." },
      ],
    }),
  );
  mcp.registerResource(
    "static-binary",
    "test://static-binary",
    { description: "A static binary resource (1x1 PNG)", mimeType: "image/png" },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: "image/png", blob: PNG_1X1 }] }),
  );
  mcp.registerResource(
    "watched-resource",
    "test://watched-resource",
    { description: "A resource clients may subscribe to", mimeType: "text/plain" },
    async (uri) => ({
      contents: [{ uri: uri.href, mimeType: "text/plain", text: "Watched resource content" }],
    }),
  );
  mcp.registerResource(
    "template-data",
    new ResourceTemplate("test://template/{id}/data", { list: undefined }),
    { description: "Data for one id, from a URI template", mimeType: "application/json" },
    async (uri, variables) => {
      const id = String(variables.id);
      return {
        contents: [
          {
            uri: uri.href,
            mimeType: "application/json",
            text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
          },
        ],
      };
    },
  );
  mcp.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    subscriptions.add(request.params.uri);
    return {};
  });
  mcp.server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    subscriptions.delete(request.params.uri);
    return {};
  });
}

function registerPrompts(mcp: McpServer): void {
  mcp.registerPrompt(
    "test_simple_prompt",
    { description: "A simple prompt without arguments" },
    async () => ({
      messages: [{ role: "user", content: { type: "text", text: "This is a simple prompt for testing." } }],
    }),
  );
  mcp.registerPrompt(
    "test_prompt_with_arguments",
    {
      description: "A prompt with two required arguments",
      argsSchema: {
        arg1: completable(z.string().describe("First test argument"), (value) =>
          ["paris", "park", "party", "test"].filter((word) => word.startsWith(value ?? "")),
        ),
        arg2: z.string().describe("Second test argument"),
      },
    },
    async ({ arg1, arg2 }) => ({
      messages: [
        {
          role: "user",
          content: { type: "text", text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` },
        },
      ],
    }),
  );
  mcp.registerPrompt(
    "test_prompt_with_embedded_resource",
    {
      description: "A prompt that embeds a resource",
      argsSchema: { resourceUri: z.string().describe("URI of the resource to embed") },
    },
    async ({ resourceUri }) => ({
      messages: [
        {
          role: "user",
          content: {
            type: "resource",
            resource: {
              uri: resourceUri,
              mimeType: "text/plain",
              text: "Embedded resource content for testing.",
            },
          },
        },
        { role: "user", content: { type: "text", text: "Please process the embedded resource above." } },
      ],
    }),
  );
  mcp.registerPrompt(
    "test_prompt_with_image",
    { description: "A prompt that carries an image" },
    async () => ({
      messages: [
        { role: "user", content: { type: "image", data: PNG_1X1, mimeType: "image/png" } },
        { role: "user", content: { type: "text", text: "Please analyze the image above." } },
      ],
    }),
  );
}

function createFixtureServer(): McpServer {
  const mcp = new McpServer(
    { name: "mcpgate-conformance-fixture", version: "1.0.0" },
    {
      capabilities: {
        tools: {},
        resources: { subscribe: true },
        prompts: {},
        logging: {},
        completions: {},
      },
    },
  );
  registerTools(mcp);
  registerResources(mcp, new Set<string>());
  registerPrompts(mcp);
  return mcp;
}

function parsePort(): number {
  const flag = process.argv.indexOf("--port");
  const raw = flag >= 0 ? process.argv[flag + 1] : process.env.FIXTURE_PORT;
  const port = Number(raw ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TypeError(`invalid --port ${raw}`);
  return port;
}

function main(): void {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const app = createMcpExpressApp({ host: "127.0.0.1" });

  app.post("/mcp", async (req: Request, res: Response) => {
    const sessionId = req.header("mcp-session-id");
    const existing = sessionId ? transports.get(sessionId) : undefined;
    if (existing) {
      await existing.handleRequest(req, res, req.body);
      return;
    }
    if (sessionId || !isInitializeRequest(req.body)) {
      res.status(sessionId ? 404 : 400).json({
        jsonrpc: "2.0",
        error: { code: -32000, message: sessionId ? "Session not found" : "Bad Request: no session" },
        id: null,
      });
      return;
    }
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: new MemoryEventStore(),
      retryInterval: 500,
      onsessioninitialized: (id) => {
        transports.set(id, transport);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) transports.delete(transport.sessionId);
    };
    await createFixtureServer().connect(transport);
    await transport.handleRequest(req, res, req.body);
  });

  const bySession = async (req: Request, res: Response) => {
    const sessionId = req.header("mcp-session-id");
    const transport = sessionId ? transports.get(sessionId) : undefined;
    if (!transport) {
      res.status(sessionId ? 404 : 400).send(sessionId ? "Session not found" : "Missing Mcp-Session-Id");
      return;
    }
    await transport.handleRequest(req, res);
  };
  app.get("/mcp", bySession);
  app.delete("/mcp", bySession);

  const server = app.listen(parsePort(), "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo;
    process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}/mcp` })}\n`);
  });
  const stop = () => {
    for (const transport of transports.values()) void transport.close();
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main();
