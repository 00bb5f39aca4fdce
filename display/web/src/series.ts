/**
 * One metric's chart data as uPlot wants it (columns: x, value, min, max), with the operations the
 * device view needs: replace by a history frame, append live readings, slide the window. Pure, so it
 * is unit-tested without a browser.
 *
 * History comes raw ([ts, value]) or as windows ([start, value, min, max]). Live readings are raw; on an
 * aggregated chart they are folded into windows of the same length, so a 7-day chart left open does not
 * grow by one point per reading, and its min/max band keeps covering spikes.
 */
export type HistoryPoint = readonly [number, number] | readonly [number, number, number, number];

export class SeriesData {
  readonly xs: number[] = [];
  readonly values: (number | null)[] = [];
  readonly mins: (number | null)[] = [];
  readonly maxs: (number | null)[] = [];
  /** Window length when the chart shows aggregates; undefined for raw points. */
  private every: number | undefined;

  get length(): number {
    return this.xs.length;
  }

  get hasBand(): boolean {
    return this.every !== undefined;
  }

  replace(points: readonly HistoryPoint[], every: number | undefined): void {
    this.clear();
    this.every = every;
    const sorted = [...points].sort((a, b) => a[0] - b[0]);
    for (const point of sorted) {
      this.xs.push(point[0]);
      this.values.push(point[1]);
      this.mins.push(point.length === 4 ? point[2] : null);
      this.maxs.push(point.length === 4 ? point[3] : null);
    }
  }

  clear(): void {
    for (const column of [this.xs, this.values, this.mins, this.maxs]) column.length = 0;
  }

  append(ts: number, value: number): void {
    const last = this.xs.length - 1;
    const lastX = this.xs[last];
    if (this.every !== undefined && lastX !== undefined && ts >= lastX) {
      if (ts < lastX + this.every) {
        // Same window: the newest value is the live edge; min and max widen to keep the spike. A raw
        // point (the history's recent tail has no min/max) starts the window with its own value.
        const previous = this.values[last] ?? value;
        this.values[last] = value;
        this.mins[last] = Math.min(this.mins[last] ?? previous, value);
        this.maxs[last] = Math.max(this.maxs[last] ?? previous, value);
        return;
      }
      const start = lastX + Math.floor((ts - lastX) / this.every) * this.every;
      this.push(this.xs.length, start, value, value, value);
      return;
    }
    // Raw: in time order (a device catching up sends older readings), one point per timestamp.
    let index = this.xs.length;
    while (index > 0 && (this.xs[index - 1] ?? 0) > ts) index -= 1;
    if (this.xs[index - 1] === ts) {
      this.values[index - 1] = value;
      return;
    }
    const band = this.every === undefined ? null : value;
    this.push(index, ts, value, band, band);
  }

  /** Drops points before `from`; an aggregate window that started before `from` but reaches into it stays. */
  trimBefore(from: number): void {
    const cutoff = from - (this.every ?? 0);
    let count = 0;
    while (count < this.xs.length && (this.xs[count] ?? 0) < cutoff) count += 1;
    if (count > 0) for (const column of [this.xs, this.values, this.mins, this.maxs]) column.splice(0, count);
  }

  columns(): [number[], (number | null)[], (number | null)[], (number | null)[]] {
    return [this.xs, this.values, this.mins, this.maxs];
  }

  private push(index: number, ts: number, value: number, min: number | null, max: number | null): void {
    this.xs.splice(index, 0, ts);
    this.values.splice(index, 0, value);
    this.mins.splice(index, 0, min);
    this.maxs.splice(index, 0, max);
  }
}
