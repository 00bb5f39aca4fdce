/**
 * How numbers, units and times read on the dashboard. Pure functions, so they are unit-tested without
 * a browser.
 */

/**
 * The unit shown beside a metric: core/units.ts's table, the same one the simulator names its metrics'
 * units from (the dashboard imports core/, never firmware-sim/). '' for a metric without one.
 */
export { unitOf } from '../../../core/units.ts';

/**
 * A reading as shown: at most three decimals, no trailing zeros, no thousands separators, so the text
 * parses back to the stored number for any value with three decimals or fewer.
 */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return '–';
  if (Math.abs(value) >= 1e9) return value.toExponential(3);
  const rounded = Number(value.toFixed(3));
  return Object.is(rounded, -0) ? '0' : String(rounded);
}

/** "just now", "3 s ago", "5 min ago", "2 h ago", "4 d ago"; "never" without a time. */
export function formatAgo(ts: number | null, now: number): string {
  if (ts === null) return 'never';
  const seconds = Math.floor((now - ts) / 1000);
  // A device clock slightly ahead of ours would otherwise read "-1 s ago".
  if (seconds < 1) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

/** Completeness as a percentage with one decimal ("99.8 %"), or "–" before ingest reported it. */
export function formatPercent(ratio: number | null | undefined): string {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return '–';
  return `${(Math.floor(ratio * 1000) / 10).toFixed(1)} %`;
}

/** Seconds until `at`, rounded up, never below 1 ("reconnecting in 3 s"). */
export function secondsUntil(at: number, now: number): number {
  return Math.max(1, Math.ceil((at - now) / 1000));
}
