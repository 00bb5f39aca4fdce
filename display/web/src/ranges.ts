/** The device view's time ranges, as buttons and as the `from` of its history subscription (`-1h`). */
export const RANGES = { '15m': 15 * 60_000, '1h': 3_600_000, '6h': 6 * 3_600_000, '24h': 24 * 3_600_000, '7d': 7 * 24 * 3_600_000 } as const;
export type RangeName = keyof typeof RANGES;
export const DEFAULT_RANGE: RangeName = '1h';

export function isRangeName(text: string | null | undefined): text is RangeName {
  return text !== null && text !== undefined && Object.hasOwn(RANGES, text);
}
