/**
 * The one duration grammar: config values (`SENSORPIPE_LIVE_TICK=20ms`), the history API's window
 * (`every=5m`) and relative times (`from=-1h`, `now-7d`, in core/query.ts) all read durations here.
 *
 *   duration = amount [unit]                no unit: milliseconds
 *   amount   = digits ["." digits]          ASCII digits only; no sign, no exponent, no spaces
 *   unit     = ms | s | m | h | d | w       lower case
 *
 * The value must come to a whole number of milliseconds no larger than Number.MAX_SAFE_INTEGER:
 * `1.5s` is 1500, while `1.5` (1.5 ms), `0.0001s` and `99999999999d` are not durations. Callers that
 * take padded input trim it first (config does, for every value); a URL parameter is taken as it is.
 */

export const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
export type DurationUnit = keyof typeof DURATION_UNITS_MS;

const DURATION = /^(\d+)(?:\.(\d+))?(ms|s|m|h|d|w)?$/;
const MAX_MS = BigInt(Number.MAX_SAFE_INTEGER);

export interface DurationOptions {
  /** Refuse a bare number (relative times need a unit: `-5` is a time, 5 ms after the epoch's start). */
  unitRequired?: boolean;
}

/** Milliseconds of a duration such as `500ms`, `1.5s`, `5m`, `2h`, `7d`, `1w` or `250`; NaN when it is not one. */
export function parseDurationMs(text: string, options: DurationOptions = {}): number {
  const match = DURATION.exec(text);
  if (match === null) return Number.NaN;
  const [, whole, fraction = '', unit] = match;
  if (unit === undefined && options.unitRequired === true) return Number.NaN;
  // Exact arithmetic: `0.7s` is 700, not 699.9999999999999, and a long amount cannot round its way in.
  const scaled = BigInt(whole! + fraction) * BigInt(DURATION_UNITS_MS[(unit ?? 'ms') as DurationUnit]);
  const divisor = 10n ** BigInt(fraction.length);
  if (scaled % divisor !== 0n) return Number.NaN;
  const ms = scaled / divisor;
  return ms <= MAX_MS ? Number(ms) : Number.NaN;
}
