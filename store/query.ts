/**
 * Validation and planning of range queries, shared by every adapter so they all refuse the same
 * hostile queries with the same codes and choose the same windows.
 */
import { SensorpipeError } from '../core/errors.ts';
import { DeviceIdSchema, MetricNameSchema } from '../core/schemas.ts';
import { AGGREGATE_FUNCTIONS, type AggregateFunction, type RangeQuery, type RawCursor, type RawPageQuery } from './port.ts';

export const QUERY_LIMITS = {
  defaultMaxPoints: 1000,
  maxMaxPoints: 10_000,
  /** A raw query may span at most this long; longer ranges must be aggregated. */
  maxRawRangeMs: 7 * 86_400_000,
  /** Any query may span at most this long. */
  maxRangeMs: 20 * 365 * 86_400_000,
  maxMetrics: 32,
  /** Points per raw page (rawPage), by default and at most. */
  defaultPageSize: 5000,
  maxPageSize: 50_000,
} as const;

/** Window lengths a chosen window is rounded up to, so windows line up with clock units. */
const NICE_WINDOWS_MS = [1, 10, 100, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000, 604_800_000];

export interface PlannedQuery {
  device: string;
  metrics: string[] | undefined;
  from: number;
  to: number;
  mode: 'raw' | 'aggregate';
  fn: AggregateFunction;
  every: number;
  maxPoints: number;
}

export function planQuery(query: RangeQuery): PlannedQuery {
  if (!DeviceIdSchema.safeParse(query.device).success) throw new SensorpipeError('QUERY_INVALID', 'device is not a valid device id');
  if (query.metrics !== undefined) {
    if (query.metrics.length === 0 || query.metrics.length > QUERY_LIMITS.maxMetrics) throw new SensorpipeError('QUERY_INVALID', `between 1 and ${QUERY_LIMITS.maxMetrics} metrics`);
    for (const metric of query.metrics) if (!MetricNameSchema.safeParse(metric).success) throw new SensorpipeError('QUERY_INVALID', 'a metric name is not valid');
  }
  if (!Number.isSafeInteger(query.from) || !Number.isSafeInteger(query.to)) throw new SensorpipeError('QUERY_RANGE_INVALID', 'from and to must be integer milliseconds');
  if (query.from >= query.to) throw new SensorpipeError('QUERY_RANGE_INVALID', 'from must be before to');
  const range = query.to - query.from;
  if (range > QUERY_LIMITS.maxRangeMs) throw new SensorpipeError('QUERY_RANGE_INVALID', 'the range is longer than 20 years');
  const fn = query.fn ?? 'mean';
  if (!(AGGREGATE_FUNCTIONS as readonly string[]).includes(fn)) throw new SensorpipeError('QUERY_FUNCTION_UNKNOWN', `fn must be one of ${AGGREGATE_FUNCTIONS.join(', ')}`);
  const maxPoints = query.maxPoints ?? QUERY_LIMITS.defaultMaxPoints;
  if (!Number.isSafeInteger(maxPoints) || maxPoints < 1 || maxPoints > QUERY_LIMITS.maxMaxPoints) throw new SensorpipeError('QUERY_INVALID', `maxPoints must be 1 to ${QUERY_LIMITS.maxMaxPoints}`);
  const mode = query.mode ?? 'aggregate';
  if (mode === 'raw') {
    if (range > QUERY_LIMITS.maxRawRangeMs) throw new SensorpipeError('QUERY_RANGE_INVALID', 'a raw query may span at most 7 days; aggregate longer ranges');
    return { device: query.device, metrics: query.metrics, from: query.from, to: query.to, mode, fn, every: 0, maxPoints };
  }
  if (query.every !== undefined && (!Number.isSafeInteger(query.every) || query.every <= 0)) throw new SensorpipeError('QUERY_RANGE_INVALID', 'every must be a positive number of milliseconds');
  const smallest = Math.ceil(range / maxPoints);
  let every = Math.max(query.every ?? niceWindow(smallest), smallest);
  // Windows align to the epoch, so an unaligned `from` adds a partial first window: grow until they fit.
  while (windowCount(query.from, query.to, every) > maxPoints) every = query.every === undefined ? niceWindow(every + Math.ceil(every / 1000)) : every + Math.ceil(every / 1000);
  return { device: query.device, metrics: query.metrics, from: query.from, to: query.to, mode, fn, every, maxPoints };
}

export interface PlannedRawPage {
  device: string;
  metrics: string[] | undefined;
  from: number;
  to: number;
  after: RawCursor | undefined;
  limit: number;
}

/** Checks a raw page query as planQuery checks a query; raw pages may span any range a query may. */
export function planRawPage(query: RawPageQuery): PlannedRawPage {
  const limit = query.limit ?? QUERY_LIMITS.defaultPageSize;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > QUERY_LIMITS.maxPageSize) throw new SensorpipeError('QUERY_INVALID', `a page holds 1 to ${QUERY_LIMITS.maxPageSize} points`);
  const { device, metrics, from, to } = planQuery({ device: query.device, ...(query.metrics === undefined ? {} : { metrics: query.metrics }), from: query.from, to: query.to });
  const after = query.after;
  if (after !== undefined && (!Number.isSafeInteger(after.ts) || !MetricNameSchema.safeParse(after.metric).success)) {
    throw new SensorpipeError('QUERY_INVALID', 'after must be a page cursor: an integer ts and a metric name');
  }
  return { device, metrics, from, to, after, limit };
}

/** True when (ts, metric) comes after the cursor in raw page order. */
export function isAfter(ts: number, metric: string, cursor: RawCursor | undefined): boolean {
  return cursor === undefined || ts > cursor.ts || (ts === cursor.ts && metric > cursor.metric);
}

function niceWindow(atLeast: number): number {
  return NICE_WINDOWS_MS.find((w) => w >= atLeast) ?? Math.ceil(atLeast / 86_400_000) * 86_400_000;
}

/** Start of the window a timestamp falls in; windows are aligned to the epoch, like InfluxDB's. */
export function windowStart(ts: number, every: number): number {
  return Math.floor(ts / every) * every;
}

/** How many epoch-aligned windows of `every` ms overlap [from, to). */
export function windowCount(from: number, to: number, every: number): number {
  return Math.ceil((to - windowStart(from, every)) / every);
}
