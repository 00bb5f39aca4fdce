/** Builds port results from adapter rows, so every adapter shapes its answers the same way. */
import type { QueryResult, Series, SeriesPoint, StoredSeq } from './port.ts';
import type { PlannedQuery } from './query.ts';

export class SeriesBuilder {
  private readonly byMetric = new Map<string, SeriesPoint[]>();
  private truncated = false;

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
      return;
    }
    points.push(point);
  }

  /** Series in the order asked for; all metrics found, sorted by name, when none were named. */
  result(): QueryResult {
    const metrics = this.query.metrics ?? [...this.byMetric.keys()].sort();
    const series: Series[] = metrics.map((metric) => ({ metric, points: this.byMetric.get(metric) ?? [] }));
    const { device, from, to, mode, fn, every } = this.query;
    return mode === 'raw'
      ? { device, from, to, mode, truncated: this.truncated, series }
      : { device, from, to, mode, fn, every, truncated: false, series };
  }
}

export const DEFAULT_LATEST_WINDOW_MS = 30 * 86_400_000;

/** Stored seqs as the port returns them: by ts then seq, each (ts, seq) once. Sorts `rows` in place. */
export function distinctSeqs(rows: StoredSeq[]): StoredSeq[] {
  rows.sort((a, b) => a.ts - b.ts || a.seq - b.seq);
  return rows.filter((row, i) => i === 0 || row.ts !== rows[i - 1]!.ts || row.seq !== rows[i - 1]!.seq);
}
