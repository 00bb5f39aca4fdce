/**
 * Point checks shared by every adapter, so that all of them refuse the same points with the same
 * reasons before anything reaches a database. Hand-written rather than zod: they run on every point
 * of every batch (hundreds of thousands a second), and they mirror core/schemas.ts exactly.
 */
import { LIMITS } from '../core/limits.ts';
import type { StorePoint as Point, WriteResult } from './port.ts';

type RefusedPoint = WriteResult['refused'][number];

const RESERVED = new Set(Object.getOwnPropertyNames(Object.prototype));
/** Half of a UTF-16 surrogate pair: not encodable as UTF-8 (String.prototype.isWellFormed is ES2024). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Metadata values: any well-formed string of 1..64 characters. The registry refuses control characters,
 * but the store does not rely on that: every adapter round-trips any such string (see line-protocol.ts).
 */
function badMeta(value: unknown): boolean {
  return value !== undefined && (typeof value !== 'string' || value.length === 0 || value.length > LIMITS.metaValueMaxLength || LONE_SURROGATE.test(value));
}

/** Why a point can never be stored, or undefined when it is fine. */
export function pointProblem(point: Point): string | undefined {
  if (typeof point.device !== 'string' || !LIMITS.deviceIdPattern.test(point.device)) return 'device id is not a lowercase slug';
  if (typeof point.metric !== 'string' || !LIMITS.metricNamePattern.test(point.metric) || RESERVED.has(point.metric)) return 'metric name is invalid';
  if (!Number.isInteger(point.ts) || point.ts < LIMITS.minTimestampMs || point.ts > LIMITS.maxTimestampMs) return 'timestamp is not an integer ms within 2000..2100';
  if (typeof point.value !== 'number' || !Number.isFinite(point.value)) return 'value is not a finite number';
  const meta = point.meta;
  if (meta !== undefined && (badMeta(meta.site) || badMeta(meta.model) || badMeta(meta.profile))) return 'metadata value is empty, too long or not well-formed Unicode';
  return undefined;
}

export interface CheckedBatch {
  /** Indexes (into the caller's array) of the points to write: valid, and the last of each identity. */
  indexes: number[];
  refused: RefusedPoint[];
}

/**
 * Splits a batch into points to write and points refused. When one identity (device, metric, ts) occurs
 * more than once in a batch, the last occurrence wins, as if the points had been written one by one;
 * the earlier ones count as written (they were overwritten), not refused.
 */
export function checkBatch(points: readonly Point[]): CheckedBatch {
  const refused: RefusedPoint[] = [];
  const lastIndex = new Map<string, number>();
  for (let i = 0; i < points.length; i++) {
    const point = points[i]!;
    const problem = pointProblem(point);
    if (problem !== undefined) {
      refused.push({ index: i, message: problem });
      continue;
    }
    lastIndex.set(`${point.device}\u0000${point.metric}\u0000${point.ts}`, i);
  }
  const indexes = [...lastIndex.values()].sort((a, b) => a - b);
  return { indexes, refused };
}

/** Merges refusals found at different stages into one list in index order. */
export function sortRefused(refused: RefusedPoint[]): RefusedPoint[] {
  return refused.sort((a, b) => a.index - b.index);
}
