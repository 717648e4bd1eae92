import { describe, expect, it } from "vitest";
import { isoNow } from "../../src/core/clock.js";

describe("isoNow", () => {
  it("equals Date#toISOString, across second, day and year boundaries and in any order", () => {
    const base = Date.UTC(2026, 11, 31, 23, 59, 58, 0);
    const samples = [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 1999, 2000, 2001, 2010, 2100, 86_400_000 + 5];
    for (const d of [...samples, ...samples.reverse()]) {
      expect(isoNow(base + d)).toBe(new Date(base + d).toISOString());
    }
    for (let i = 0; i < 2000; i++) {
      const t = Math.floor(Math.random() * 4_000_000_000_000);
      expect(isoNow(t)).toBe(new Date(t).toISOString());
    }
  });

  it("reads the clock when given no time", () => {
    const before = Date.now();
    const t = Date.parse(isoNow());
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(Date.now());
  });
});
