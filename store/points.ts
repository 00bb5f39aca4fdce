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

/**
 * Strings already found valid, per role: a batch repeats a handful of device ids, metric names and
 * metadata values thousands of times, and a Set lookup is cheaper than the regular expressions.
 */
const knownGood = { device: new Set<string>(), metric: new Set<string>(), meta: new Set<string>() };
const KNOWN_GOOD_MAX = 10_000;

function remember(set: Set<string>, value: string): void {
  if (set.size >= KNOWN_GOOD_MAX) set.clear();
  set.add(value);
}

function goodDevice(device: unknown): boolean {
  if (typeof device !== 'string') return false;
  if (knownGood.device.has(device)) return true;
  if (!LIMITS.deviceIdPattern.test(device)) return false;
  remember(knownGood.device, device);
  return true;
}

function goodMetric(metric: unknown): boolean {
  if (typeof metric !== 'string') return false;
  if (knownGood.metric.has(metric)) return true;
  if (!LIMITS.metricNamePattern.test(metric) || RESERVED.has(metric)) return false;
  remember(knownGood.metric, metric);
  return true;
}

function goodMeta(value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value === 'string' && knownGood.meta.has(value)) return true;
  if (badMeta(value)) return false;
  remember(knownGood.meta, value as string);
  return true;
}

/** Why a point can never be stored, or undefined when it is fine. */
export function pointProblem(point: Point): string | undefined {
  if (!goodDevice(point.device)) return 'device id is not a lowercase slug';
  if (!goodMetric(point.metric)) return 'metric name is invalid';
  if (!Number.isInteger(point.ts) || point.ts < LIMITS.minTimestampMs || point.ts > LIMITS.maxTimestampMs) return 'timestamp is not an integer ms within 2000..2100';
  if (typeof point.value !== 'number' || !Number.isFinite(point.value)) return 'value is not a finite number';
  if (point.seq !== undefined && !(Number.isSafeInteger(point.seq) && point.seq >= 0)) return 'seq is not an integer from 0 to 2^53 - 1';
  // Only "broker" or nothing: a spool record or another writer can never make a point look signed by
  // naming some other trust (absent is signed, and only ingest's signed path leaves it out).
  if (point.trust !== undefined && point.trust !== 'broker') return 'trust is not "broker"';
  const meta = point.meta;
  if (meta !== undefined && (!goodMeta(meta.site) || !goodMeta(meta.model) || !goodMeta(meta.profile))) return 'metadata value is empty, too long or not well-formed Unicode';
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
  // device → metric → ts → index of the last occurrence. Nested maps with number keys: no string
  // building per point (this runs for every point written).
  const seen = new Map<string, Map<string, Map<number, number>>>();
  let duplicates = false;
  let valid = 0;
  for (let i = 0; i < points.length; i++) {
    const point = points[i]!;
    const problem = pointProblem(point);
    if (problem !== undefined) {
      refused.push({ index: i, message: problem });
      continue;
    }
    valid += 1;
    let byMetric = seen.get(point.device);
    if (byMetric === undefined) seen.set(point.device, (byMetric = new Map()));
    let byTs = byMetric.get(point.metric);
    if (byTs === undefined) byMetric.set(point.metric, (byTs = new Map()));
    if (byTs.has(point.ts)) duplicates = true;
    byTs.set(point.ts, i);
  }
  let indexes: number[];
  if (!duplicates) {
    indexes = new Array<number>(valid);
    let n = 0;
    let r = 0;
    for (let i = 0; i < points.length; i++) {
      if (r < refused.length && refused[r]!.index === i) r += 1;
      else indexes[n++] = i;
    }
  } else {
    indexes = [];
    for (const byMetric of seen.values()) for (const byTs of byMetric.values()) for (const i of byTs.values()) indexes.push(i);
    indexes.sort((a, b) => a - b);
  }
  return { indexes, refused };
}

/** Merges refusals found at different stages into one list in index order. */
export function sortRefused(refused: RefusedPoint[]): RefusedPoint[] {
  return refused.sort((a, b) => a.index - b.index);
}
