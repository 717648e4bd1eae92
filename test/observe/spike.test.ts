import { describe, expect, it } from "vitest";
import { createSpikeDetector, type SpikeInfo } from "../../src/observe/spike.js";

function setup(overrides: { floor?: number; cooldownMs?: number } = {}) {
  let t = 0;
  const spikes: SpikeInfo[] = [];
  const d = createSpikeDetector({
    bucketMs: 10_000,
    factor: 3,
    floor: overrides.floor ?? 10,
    alpha: 0.5,
    cooldownMs: overrides.cooldownMs ?? 60_000,
    now: () => t,
    onSpike: (i) => spikes.push(i),
  });
  const burst = (n: number) => {
    for (let i = 0; i < n; i++) d.record();
  };
  return { d, spikes, burst, advance: (ms: number) => (t += ms) };
}

describe("401 spike detector", () => {
  it("raises exactly one alert when a bucket passes the floor over a quiet baseline", () => {
    const s = setup();
    s.burst(10);
    expect(s.spikes).toHaveLength(0);
    s.burst(1);
    expect(s.spikes).toHaveLength(1);
    expect(s.spikes[0]).toMatchObject({ count: 11, threshold: 10, bucketMs: 10_000 });
    s.burst(200);
    expect(s.spikes).toHaveLength(1);
  });

  it("stays one spike while the surge continues into the next bucket", () => {
    const s = setup();
    s.burst(30);
    s.advance(10_000);
    s.burst(30);
    expect(s.spikes).toHaveLength(1);
  });

  it("judges against the baseline: the old rate is no spike, more than three times it is", () => {
    const s = setup({ floor: 1, cooldownMs: 0 });
    // Ten buckets of 2 failures: the baseline settles near 2 (the first buckets alert, then it calms).
    for (let i = 0; i < 10; i++) {
      s.burst(2);
      s.advance(10_000);
    }
    s.spikes.length = 0;
    s.burst(5);
    expect(s.spikes).toHaveLength(0);
    s.burst(1);
    expect(s.spikes).toHaveLength(1);
    expect(s.spikes[0]!.baseline).toBeGreaterThan(1.9);
    expect(s.spikes[0]!.count).toBe(6);
  });

  it("alerts for a later spike only after the spike ended and the cooldown passed", () => {
    const s = setup({ cooldownMs: 60_000 });
    s.burst(20);
    s.advance(10_000); // the surge bucket closes; this one is quiet
    s.advance(10_000);
    s.burst(100); // a second surge, inside the cooldown
    expect(s.spikes).toHaveLength(1);
    s.advance(70_000);
    s.burst(200);
    expect(s.spikes).toHaveLength(2);
  });

  it("refuses nonsense options", () => {
    expect(() => createSpikeDetector({ onSpike: () => {}, bucketMs: 0 })).toThrow(TypeError);
    expect(() => createSpikeDetector({ onSpike: () => {}, alpha: 2 })).toThrow(TypeError);
    expect(() => createSpikeDetector({ onSpike: () => {}, factor: 0.5 })).toThrow(TypeError);
  });
});
