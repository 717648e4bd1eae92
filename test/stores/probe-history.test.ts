import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { openHistoryStore, type ProbeRecord } from "../../src/stores/probe-history.js";

const PG_URL = process.env.MCPGATE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const schema = `probe_hist_${randomBytes(4).toString("hex")}`;
const dir = mkdtempSync(join(tmpdir(), "mcpgate-history-"));

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
});

const base: ProbeRecord = {
  target: "t1",
  at: 1_000,
  status: "up",
  httpStatus: 200,
  latencyMs: 12.5,
  tools: 2,
  schemaHash: "ab",
  challenge: "ok",
  error: null,
  steps: [{ name: "tools/list", httpStatus: 200, latencyMs: 3, ok: true }],
};

describe.each([
  ["memory", () => "memory:"],
  ["SQLite", () => `sqlite:${join(dir, "h.db")}`],
  ["PostgreSQL", () => `${PG_URL}?schema=${schema}`],
])("%s probe history", (_name, location) => {
  it("stores results and events, computes uptime and prunes old rows", async () => {
    const history = await openHistoryStore(location());
    try {
      await history.record(base);
      await history.record({
        ...base,
        at: 2_000,
        status: "timeout",
        error: "slow",
        tools: null,
        schemaHash: null,
      });
      await history.record({ ...base, target: "other", at: 2_500 });
      await history.recordEvent({
        target: "t1",
        at: 2_000,
        kind: "state_change",
        message: "t1 is timeout",
        detail: { from: "up" },
      });
      expect(await history.uptime("t1", 0)).toEqual({ checks: 2, up: 1 });
      expect(await history.uptime("t1", 1_500)).toEqual({ checks: 1, up: 0 });
      expect((await history.last("t1"))?.status).toBe("timeout");
      const rows = await history.results("t1", 0);
      expect(rows.map((r) => r.at)).toEqual([1000, 2000]);
      expect(rows[0]).toEqual(base);
      expect((await history.results("t1", 0, 1)).map((r) => r.at)).toEqual([2000]);
      expect((await history.events("t1", 5))[0]).toMatchObject({
        kind: "state_change",
        detail: { from: "up" },
      });
      expect(await history.events("other", 5)).toEqual([]);
      await history.prune(1_500);
      expect(await history.uptime("t1", 0)).toEqual({ checks: 1, up: 0 });
    } finally {
      await history.close();
    }
  });
});
