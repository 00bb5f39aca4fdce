/** Reads a component's Prometheus /metrics (ingest's, the broker's) into numbers the soak can compare. */

/** Prometheus text → { name or name{labels}: value } for sensorpipe's own metrics; undefined if it did not answer. */
export async function scrape(url: string): Promise<Record<string, number> | undefined> {
  const text = await fetch(url, { signal: AbortSignal.timeout(2000) }).then((r) => (r.ok ? r.text() : undefined), () => undefined);
  if (text === undefined) return undefined;
  const metrics: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^(sensorpipe_[a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match) metrics[match[1]!] = Number(match[2]);
  }
  return metrics;
}

/**
 * Totals of some counters over every life of a process that restarts (a restart sets them back to 0):
 * sampled now and then, and right before the soak kills it; a value lower than the last one seen means
 * a new life, and the last life's count is kept.
 */
export class CounterTotals {
  private readonly banked = new Map<string, number>();
  private readonly last = new Map<string, number>();

  constructor(
    private readonly url: string,
    private readonly names: string[],
  ) {}

  async sample(): Promise<void> {
    const metrics = await scrape(this.url);
    if (metrics === undefined) return;
    for (const name of this.names) {
      const value = metrics[name] ?? 0; // a labelled counter appears once it counted something
      const last = this.last.get(name) ?? 0;
      if (value < last) this.banked.set(name, (this.banked.get(name) ?? 0) + last);
      this.last.set(name, value);
    }
  }

  total(name: string): number {
    return (this.banked.get(name) ?? 0) + (this.last.get(name) ?? 0);
  }
}
