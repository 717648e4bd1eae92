import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/core/audit-event.js";
import { createAuditTrail, createFileAuditSink, scrubText } from "../../src/observe/audit.js";
import { createPostgresAuditSink } from "../../src/stores/postgres-audit.js";

const PG = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const time = () => new Date().toISOString();

describe("audit trail to a JSON-lines file", () => {
  const dir = mkdtempSync(join(tmpdir(), "mcpgate-audit-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("writes one JSON object per line, in order, to a file only its owner can read", async () => {
    const path = join(dir, "a.jsonl");
    const trail = createAuditTrail({ sinks: [createFileAuditSink({ path })] });
    trail.record({ type: "auth_failure", time: time(), ip: "203.0.113.5", reason: "invalid" });
    trail.record({ type: "lockout", time: time(), ip: "203.0.113.5", detail: { seconds: 900 } });
    trail.record({
      type: "denied",
      time: time(),
      actor: "mcpg_7Hq2xK9a",
      tool: "delete_note",
      reason: "needs admin",
    });
    await trail.close();
    const lines = readFileSync(path, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as AuditEvent);
    expect(lines.map((l) => l.type)).toEqual(["auth_failure", "lockout", "denied"]);
    expect(lines[1]!.detail).toEqual({ seconds: 900 });
    expect(statSync(path).mode & 0o077).toBe(0);
  });

  it("keeps one auth_success per actor and source per interval", async () => {
    let t = 0;
    const seen: string[] = [];
    const trail = createAuditTrail({
      sinks: [],
      successIntervalMs: 60_000,
      now: () => t,
      onEvent: (e) => seen.push(`${e.type}:${e.actor}:${e.ip}`),
    });
    const ok = (actor: string, ip: string) => trail.record({ type: "auth_success", time: time(), actor, ip });
    ok("mcpg_AAAAAAAA", "203.0.113.1");
    ok("mcpg_AAAAAAAA", "203.0.113.1");
    ok("mcpg_AAAAAAAA", "203.0.113.2");
    ok("mcpg_BBBBBBBB", "203.0.113.1");
    t += 60_000;
    ok("mcpg_AAAAAAAA", "203.0.113.1");
    trail.record({ type: "auth_failure", time: time(), ip: "203.0.113.1", reason: "invalid" });
    trail.record({ type: "auth_failure", time: time(), ip: "203.0.113.1", reason: "invalid" });
    expect(seen).toEqual([
      "auth_success:mcpg_AAAAAAAA:203.0.113.1",
      "auth_success:mcpg_AAAAAAAA:203.0.113.2",
      "auth_success:mcpg_BBBBBBBB:203.0.113.1",
      "auth_success:mcpg_AAAAAAAA:203.0.113.1",
      "auth_failure:undefined:203.0.113.1",
      "auth_failure:undefined:203.0.113.1",
    ]);
  });

  it("keeps one oauth_token_refused per source, reason and client per interval (anyone can send them)", () => {
    let t = 0;
    const seen: string[] = [];
    const trail = createAuditTrail({
      sinks: [],
      now: () => t,
      onEvent: (e) => seen.push(`${e.ip}:${e.reason}`),
    });
    const refused = (ip: string, reason: string, client = "c1") =>
      trail.record({
        type: "oauth_token_refused",
        time: time(),
        ip,
        reason,
        detail: { client, grant: "refresh_token" },
      });
    for (let i = 0; i < 1000; i++) refused("203.0.113.9", "invalid_grant");
    refused("203.0.113.9", "invalid_client");
    refused("203.0.113.9", "invalid_grant", "c2");
    refused("203.0.113.10", "invalid_grant");
    t += 60_000;
    refused("203.0.113.9", "invalid_grant");
    expect(seen).toEqual([
      "203.0.113.9:invalid_grant",
      "203.0.113.9:invalid_client",
      "203.0.113.9:invalid_grant",
      "203.0.113.10:invalid_grant",
      "203.0.113.9:invalid_grant",
    ]);
  });

  it("scrubs anything shaped like a key or a token from event text, keeping the key's public prefix", () => {
    expect(scrubText("bad mcpg_7Hq2xK9a_abcdefghijklmnopqrstuvwxyz012345 here")).toBe(
      "bad mcpg_7Hq2xK9a_[redacted] here",
    );
    expect(scrubText("jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl end")).toBe("jwt [redacted] end");
    expect(scrubText("Authorization: Bearer abc.def")).toBe("Authorization: Bearer [redacted]");
    expect(scrubText("x".repeat(400)).length).toBeLessThanOrEqual(257);
  });

  it("reports a failing sink and keeps serving the others", async () => {
    const path = join(dir, "b.jsonl");
    const errors: string[] = [];
    const broken = {
      name: "broken",
      write: async () => {
        throw new Error("disk full");
      },
      close: async () => {},
    };
    const trail = createAuditTrail({
      sinks: [broken, createFileAuditSink({ path })],
      onError: (s) => errors.push(s),
    });
    trail.record({ type: "store_error", time: time(), reason: "state store unavailable" });
    await trail.close();
    expect(errors).toEqual(["broken"]);
    expect(readFileSync(path, "utf8")).toContain('"store_error"');
  });
});

describe("audit trail to PostgreSQL", () => {
  const schema = `audit_test_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Pool({ connectionString: PG, max: 1 });
  afterAll(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  });

  it("creates its table once (concurrent init) and stores every event's fields", async () => {
    const a = createPostgresAuditSink({ connectionString: PG, schema });
    const b = createPostgresAuditSink({ connectionString: PG, schema });
    await Promise.all([a.init(), b.init()]);
    const trail = createAuditTrail({ sinks: [a] });
    trail.record({
      type: "session_mismatch",
      time: "2026-01-02T03:04:05.000Z",
      actor: "mcpg_7Hq2xK9a",
      ip: "203.0.113.5",
      requestId: "r-1",
      other: "mcpg_BBBBBBBB",
      sessionId: "abcd1234…",
    });
    for (let i = 0; i < 600; i++)
      trail.record({ type: "auth_failure", time: time(), ip: "198.51.100.1", reason: "invalid" });
    await trail.close();
    await b.close();
    const { rows } = await admin.query(`SELECT * FROM "${schema}".audit_events ORDER BY id`);
    expect(rows).toHaveLength(601);
    expect(rows[0]).toMatchObject({
      type: "session_mismatch",
      actor: "mcpg_7Hq2xK9a",
      ip: "203.0.113.5",
      request_id: "r-1",
      other: "mcpg_BBBBBBBB",
    });
    expect((rows[0].time as Date).toISOString()).toBe("2026-01-02T03:04:05.000Z");
  });

  it("stores an event's trace_id, and adds the column to a table made without it", async () => {
    const old = `audit_old_${randomBytes(5).toString("hex")}`;
    try {
      // The table as an earlier version made it: no trace_id column.
      await admin.query(`CREATE SCHEMA "${old}"`);
      await admin.query(
        `CREATE TABLE "${old}".audit_events (id BIGSERIAL PRIMARY KEY, time TIMESTAMPTZ NOT NULL,
           type TEXT NOT NULL, actor TEXT, ip TEXT, request_id TEXT, reason TEXT, method TEXT, tool TEXT,
           other TEXT, session_id TEXT, detail JSONB)`,
      );
      await admin.query(`INSERT INTO "${old}".audit_events (time, type) VALUES (now(), 'lockout')`);
      const sink = createPostgresAuditSink({ connectionString: PG, schema: old });
      await sink.init();
      const traceId = randomBytes(16).toString("hex");
      await sink.write([{ type: "denied", time: time(), actor: "key:abc", trace_id: traceId }]);
      await sink.close();
      const { rows } = await admin.query(`SELECT type, trace_id FROM "${old}".audit_events ORDER BY id`);
      expect(rows).toEqual([
        { type: "lockout", trace_id: null },
        { type: "denied", trace_id: traceId },
      ]);
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${old}" CASCADE`);
    }
  });

  it("fails a batch with ERR_STORE_UNAVAILABLE when the database is unreachable", async () => {
    const sink = createPostgresAuditSink({
      connectionString: "postgres://postgres@127.0.0.1:1/none",
      schema,
    });
    await expect(sink.init()).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
    await sink.close();
  });
});
