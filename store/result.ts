/** Builds port results from adapter rows, so every adapter shapes its answers the same way. */
import type { ReadingTrust } from '../core/schemas.ts';
import type { QueryResult, Series, SeriesPoint, StoredSeq } from './port.ts';
import type { PlannedQuery } from './query.ts';

export class SeriesBuilder {
  private readonly byMetric = new Map<string, SeriesPoint[]>();
  private truncated = false;
  /** Per cut series, the time of its first point left out (the (maxPoints + 1)th). */
  private readonly firstCut = new Map<string, number>();
  private trust: Map<string, Set<ReadingTrust>> | undefined;

  constructor(private readonly query: PlannedQuery) {
    for (const metric of query.metrics ?? []) this.byMetric.set(metric, []);
  }

  /** Adds a point; rows of one metric must arrive in ascending ts. Raw points beyond maxPoints are cut. */
  add(metric: string, point: SeriesPoint): void {
    let points = this.byMetric.get(metric);
    if (points === undefined) {
      if (this.query.metrics !== undefined) return;
      points = [];
      this.byMetric.set(metric, points);
    }
    const last = points[points.length - 1];
    // Two rows at one timestamp (InfluxDB series that differ only in metadata tags, see SCHEMA.md): keep one.
    if (last !== undefined && last.ts === point.ts) {
      points[points.length - 1] = point;
      return;
    }
    if (points.length >= this.query.maxPoints) {
      this.truncated = true;
      if (!this.firstCut.has(metric)) this.firstCut.set(metric, point.ts);
      return;
    }
    points.push(point);
  }

  /**
   * Records that `metric` has readings of trust `trust` in the range (a stored value other than
   * "broker", or none: readings written before trust levels existed, counts as "signed"). Once called,
   * every series of the result carries its `trust` list.
   */
  addTrust(metric: string, trust: unknown): void {
    this.trust ??= new Map();
    let levels = this.trust.get(metric);
    if (levels === undefined) this.trust.set(metric, (levels = new Set()));
    levels.add(trust === 'broker' ? 'broker' : 'signed');
  }

  /** Every series carries a `trust` list (empty when nothing was recorded for it). */
  withTrust(): void {
    this.trust ??= new Map();
  }

  /** Every series with points has readings of this one trust level (a device known to have no others). */
  trustOfAll(trust: ReadingTrust): void {
    for (const [metric, points] of this.byMetric) if (points.length > 0) this.addTrust(metric, trust);
    this.withTrust();
  }

  /**
   * Series in the order asked for; all metrics found, sorted by name, when none were named. A cut raw
   * answer is made complete up to `nextFrom` (the earliest time any series was cut at): every series
   * keeps only its points before it, so asking again from `nextFrom` continues without gap or overlap.
   */
  result(): QueryResult {
    const metrics = this.query.metrics ?? [...this.byMetric.keys()].sort();
    const trust = this.trust;
    const nextFrom = this.truncated ? Math.min(...this.firstCut.values()) : undefined;
    const series: Series[] = metrics.map((metric) => {
      let points = this.byMetric.get(metric) ?? [];
      if (nextFrom !== undefined && (points.at(-1)?.ts ?? -Infinity) >= nextFrom) points = points.filter((p) => p.ts < nextFrom);
      if (trust === undefined) return { metric, points };
      // Trust of the points returned; an empty series has none (and says nothing of it).
      return points.length === 0 ? { metric, points } : { metric, points, trust: [...(trust.get(metric) ?? [])].sort() };
    });
    const { device, from, to, mode, fn, every } = this.query;
    if (mode === 'raw' && nextFrom !== undefined) return { device, from, to, mode, truncated: true, nextFrom, series };
    return mode === 'raw'
      ? { device, from, to, mode, truncated: false, series }
      : { device, from, to, mode, fn, every, truncated: false, series };
  }
}

export const DEFAULT_LATEST_WINDOW_MS = 30 * 86_400_000;

/** Stored seqs as the port returns them: by ts then seq, each (ts, seq) once. Sorts `rows` in place. */
export function distinctSeqs(rows: StoredSeq[]): StoredSeq[] {
  rows.sort((a, b) => a.ts - b.ts || a.seq - b.seq);
  return rows.filter((row, i) => i === 0 || row.ts !== rows[i - 1]!.ts || row.seq !== rows[i - 1]!.seq);
}
