/**
 * The values of the window rules, from what the pipeline publishes:
 *
 *   - CounterWindow: a cumulative counter (ingest's rejections, completeness's received/missing) read as
 *     a Prometheus counter: its increase over the window; a value lower than the one before is a reset
 *     (ingest restarted its counting), after which the new value counts as increase. The first value
 *     seen is the baseline: a retained count read at start tells how many happened since ever, not
 *     within the window. Samples are stamped with the time they arrived (the counts carry no reading time).
 *   - RateWindow: readings (by their own timestamps) of one metric: the change per unit of time between
 *     the oldest and the newest reading within the window.
 */

interface CounterSample {
  at: number;
  /** The counter with every reset before it added back: never decreases. */
  total: number;
}

export class CounterWindow {
  private samples: CounterSample[] = [];
  private lastRaw: number | undefined;
  private offset = 0;

  constructor(private readonly windowMs: number) {}

  add(at: number, raw: number): void {
    if (this.lastRaw !== undefined && raw < this.lastRaw) this.offset += this.lastRaw;
    this.lastRaw = raw;
    this.samples.push({ at, total: raw + this.offset });
    this.prune(at);
  }

  /** Increase over the window ending at `now`; undefined before the first sample. */
  increase(now: number): number | undefined {
    this.prune(now);
    const newest = this.samples.at(-1);
    const baseline = this.samples[0];
    if (newest === undefined || baseline === undefined) return undefined;
    return newest.total - baseline.total;
  }

  /** Keeps the newest sample at or before the window's start as the baseline, and everything after it. */
  private prune(now: number): void {
    const start = now - this.windowMs;
    let keepFrom = 0;
    for (let i = 0; i < this.samples.length; i++) if (this.samples[i]!.at <= start) keepFrom = i;
    if (keepFrom > 0) this.samples = this.samples.slice(keepFrom);
    // Bounded however often the counter is published (ingest: ≤ 1/s per device).
    if (this.samples.length > 10_000) this.samples.splice(1, this.samples.length - 10_000);
  }
}

interface RateSample {
  ts: number;
  value: number;
}

export class RateWindow {
  private samples: RateSample[] = [];

  constructor(
    private readonly windowMs: number,
    private readonly perMs: number,
  ) {}

  /** Adds a reading (in time order: the caller drops older ones) and returns the rate, if two readings span time. */
  add(ts: number, value: number): number | undefined {
    this.samples.push({ ts, value });
    const start = ts - this.windowMs;
    let drop = 0;
    while (drop < this.samples.length - 1 && this.samples[drop]!.ts < start) drop++;
    if (drop > 0) this.samples.splice(0, drop);
    if (this.samples.length > 10_000) this.samples.splice(0, this.samples.length - 10_000);
    const first = this.samples[0]!;
    if (ts <= first.ts) return undefined;
    return ((value - first.value) / (ts - first.ts)) * this.perMs;
  }
}
