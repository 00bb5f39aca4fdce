/** The device view's time ranges, as buttons and as the `from` of its history subscription (`-1h`). */
export const RANGES = { '15m': 15 * 60_000, '1h': 3_600_000, '6h': 6 * 3_600_000, '24h': 24 * 3_600_000, '7d': 7 * 24 * 3_600_000 } as const;
export type RangeName = keyof typeof RANGES;
export const DEFAULT_RANGE: RangeName = '1h';
/** The longest range offered: how far back the device view looks for a device's first reading. */
export const LONGEST_RANGE: RangeName = '7d';

/**
 * The range a device view opens on when the user has not chosen one: the smallest offered range that
 * holds everything from the device's first reading (in the longest range) to now, so that a device with
 * three minutes of data opens on 15 minutes, not on an hour that is empty to the left. No reading in the
 * longest range: the default.
 */
export function fitRange(firstReading: number | undefined, now: number): RangeName {
  if (firstReading === undefined) return DEFAULT_RANGE;
  const span = now - firstReading;
  return (Object.keys(RANGES) as RangeName[]).find((name) => RANGES[name] >= span) ?? LONGEST_RANGE;
}

export function isRangeName(text: string | null | undefined): text is RangeName {
  return text !== null && text !== undefined && Object.hasOwn(RANGES, text);
}
