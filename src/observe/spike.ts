/**
 * A global detector of 401 spikes: the signal of a key-enumeration attack, or of a client whose key
 * was rotated and never updated. 401s are counted in fixed buckets (default 10 s); the baseline is
 * an exponentially weighted moving average (EWMA) of past buckets. A spike is a current bucket whose
 * count exceeds `max(factor × baseline, floor)`. One alert per spike: the spike ends when a whole
 * bucket stays under the threshold, and a new alert also waits for `cooldownMs` after the last one.
 * Each instance watches its own traffic.
 */

/** What a spike alert reports. */
export interface SpikeInfo {
  /** 401s in the current bucket when the alert fired. */
  count: number;
  /** The EWMA baseline per bucket. */
  baseline: number;
  threshold: number;
  bucketMs: number;
}

/** Options of {@link createSpikeDetector}. */
export interface SpikeDetectorOptions {
  /** Bucket length. Default 10 000 ms. */
  bucketMs?: number;
  /** Multiple of the baseline that counts as a spike. Default 3. */
  factor?: number;
  /** Smallest count per bucket that can be a spike (quiet services have a baseline near 0). Default 20. */
  floor?: number;
  /** EWMA weight of the newest bucket, in (0, 1]. Default 0.3. */
  alpha?: number;
  /** Smallest time between two alerts. Default 300 000 ms. */
  cooldownMs?: number;
  onSpike: (info: SpikeInfo) => void;
  now?: () => number;
}

export interface SpikeDetector {
  /** Count one 401. */
  record(): void;
  /** Current baseline per bucket (for tests and metrics). */
  baseline(): number;
}

/**
 * Build a spike detector.
 *
 * @example
 * const spikes = createSpikeDetector({ onSpike: (i) => alerts.send({ kind: "auth_failure_spike", ...i }) });
 * if (status === 401) spikes.record();
 */
export function createSpikeDetector(options: SpikeDetectorOptions): SpikeDetector {
  const bucketMs = options.bucketMs ?? 10_000;
  const factor = options.factor ?? 3;
  const floor = options.floor ?? 20;
  const alpha = options.alpha ?? 0.3;
  const cooldownMs = options.cooldownMs ?? 300_000;
  if (!(bucketMs > 0)) throw new TypeError("createSpikeDetector: bucketMs must be > 0");
  if (!(factor >= 1)) throw new TypeError("createSpikeDetector: factor must be >= 1");
  if (!(floor >= 1)) throw new TypeError("createSpikeDetector: floor must be >= 1");
  if (!(alpha > 0 && alpha <= 1)) throw new TypeError("createSpikeDetector: alpha must be in (0, 1]");
  if (typeof options.onSpike !== "function") throw new TypeError("createSpikeDetector: onSpike is required");
  const now = options.now ?? Date.now;

  let bucketStart = now();
  let count = 0;
  let baseline = 0;
  let inSpike = false;
  let lastAlert = Number.NEGATIVE_INFINITY;
  const threshold = () => Math.max(factor * baseline, floor);

  function close(c: number): void {
    if (c <= threshold()) inSpike = false;
    baseline = alpha * c + (1 - alpha) * baseline;
  }

  function roll(t: number): void {
    if (t < bucketStart + bucketMs) return;
    const n = Math.floor((t - bucketStart) / bucketMs);
    close(count);
    // Quiet buckets pull the baseline down; past ~50 of them it is 0 for any alpha that matters.
    for (let i = 1; i < Math.min(n, 50); i++) close(0);
    bucketStart += n * bucketMs;
    count = 0;
  }

  return {
    record() {
      const t = now();
      roll(t);
      count++;
      if (inSpike || count <= threshold()) return;
      inSpike = true;
      if (t - lastAlert < cooldownMs) return;
      lastAlert = t;
      options.onSpike({
        count,
        baseline: Math.round(baseline * 100) / 100,
        threshold: threshold(),
        bucketMs,
      });
    },
    baseline: () => baseline,
  };
}
