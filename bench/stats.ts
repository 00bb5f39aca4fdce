/**
 * Figures from repeated runs: every judged figure is the median of at least three runs, reported with
 * its spread, so that one lucky or unlucky run on a shared machine decides nothing. Pure functions.
 */

/** The median (the mean of the middle two for an even count); null for no values. */
export function median(values: readonly number[]): number | null {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface Repeated {
  median: number | null;
  min: number | null;
  max: number | null;
  /** (max − min) / median: how far apart the runs were. */
  relativeSpread: number | null;
  /** Every run's value, in run order (null where a run gave none). */
  runs: (number | null)[];
}

export function repeated(values: readonly (number | null | undefined)[]): Repeated {
  const runs = values.map((v) => (typeof v === 'number' && Number.isFinite(v) ? v : null));
  const numbers = runs.filter((v): v is number => v !== null);
  const mid = median(numbers);
  const min = numbers.length > 0 ? Math.min(...numbers) : null;
  const max = numbers.length > 0 ? Math.max(...numbers) : null;
  const relativeSpread = mid === null || mid === 0 || min === null || max === null ? null : round((max - min) / Math.abs(mid), 3);
  return { median: mid === null ? null : round(mid, 3), min, max, relativeSpread, runs };
}

export function round(value: number, digits = 0): number {
  return Math.round(value * 10 ** digits) / 10 ** digits;
}

/** "12,345 (11,900–12,800, 3 runs)": a median with its range, for tables. */
export function formatRepeated(r: Repeated, digits = 0): string {
  const fmt = (v: number | null) => (v === null ? '—' : v.toLocaleString('en-US', { maximumFractionDigits: digits }));
  const count = r.runs.filter((v) => v !== null).length;
  if (count <= 1) return fmt(r.median);
  return `${fmt(r.median)} (${fmt(r.min)}–${fmt(r.max)}, ${count} runs)`;
}
