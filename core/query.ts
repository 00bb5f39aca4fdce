/**
 * History query parameters: one schema shared by the store (which validates every query it runs) and
 * the display's HTTP API (which parses them from a URL). Validation resolves the defaults, so every
 * adapter receives the same fully-specified query and computes the same windows.
 *
 * Codes: QUERY_INVALID (missing or malformed parameter), QUERY_RANGE_INVALID (reversed, empty or too long
 * a range for the resolution), QUERY_FUNCTION_UNKNOWN (fn not one of AGGREGATE_FNS or 'raw').
 */
import { z } from 'zod';
import { SensorpipeError } from './errors.ts';
import { LIMITS } from './limits.ts';
import { DeviceIdSchema, MetricNameSchema } from './schemas.ts';

/** Aggregations over a window. `last` is the value with the greatest timestamp in the window. */
export const AGGREGATE_FNS = ['mean', 'min', 'max', 'last', 'count'] as const;
export type AggregateFn = (typeof AGGREGATE_FNS)[number];
/** `raw`: every stored point, unaggregated (capped at maxPoints, see `truncated`). */
export type QueryFn = AggregateFn | 'raw';

export const QUERY_LIMITS = {
  /** Points per series when the caller gives no maxPoints (a chart's width, roughly). */
  defaultMaxPoints: 1000,
  maxMaxPoints: 10_000,
  /**
   * Longest range of a raw query. Raw data is typically 1 s apart, so a week is already ~600k rows
   * per metric; longer ranges must be aggregated (which is also what a chart can show).
   */
  maxRawRangeMs: 7 * 24 * 3_600_000,
  maxMetrics: LIMITS.maxMetricsPerReading,
  /** Smallest aggregation window: the store's precision is one millisecond. */
  minEveryMs: 1,
} as const;

/** A history query as a caller writes it (numbers in ms since the epoch; `to` is exclusive). */
export const HistoryQuerySchema = z.strictObject({
  device: DeviceIdSchema,
  metrics: z.array(MetricNameSchema).min(1).max(QUERY_LIMITS.maxMetrics),
  /** Inclusive start, ms since the Unix epoch. */
  from: z.number().int().min(LIMITS.minTimestampMs).max(LIMITS.maxTimestampMs),
  /** Exclusive end, ms since the Unix epoch. */
  to: z.number().int().min(LIMITS.minTimestampMs).max(LIMITS.maxTimestampMs),
  /** Aggregation function; default `mean`. */
  fn: z.string().optional(),
  /** Window length in ms for aggregation; default: chosen from the range so there are ≤ maxPoints windows. */
  every: z.number().int().optional(),
  /** Most points per series; default 1000. */
  maxPoints: z.number().int().min(1).max(QUERY_LIMITS.maxMaxPoints).optional(),
});
export type HistoryQuery = z.input<typeof HistoryQuerySchema>;

/** A validated query with every default resolved. */
export interface ResolvedHistoryQuery {
  device: string;
  metrics: string[];
  from: number;
  to: number;
  fn: QueryFn;
  /** Window length in ms; null for raw queries. */
  every: number | null;
  maxPoints: number;
}

function isQueryFn(fn: string): fn is QueryFn {
  return fn === 'raw' || (AGGREGATE_FNS as readonly string[]).includes(fn);
}

/**
 * The window chosen when the caller gives none: the smallest one (a whole second when ≥ 1 s) that keeps
 * the number of windows — including a partial first one, since windows align to the epoch — ≤ maxPoints.
 */
export function autoWindowMs(from: number, to: number, maxPoints: number): number {
  const span = to - from;
  const slots = Math.max(1, maxPoints - 1);
  let every = Math.max(1, Math.ceil(span / slots));
  if (every >= 1000) every = Math.ceil(every / 1000) * 1000;
  // Epoch alignment can add one window; grow until the count fits (terminates: count falls as every grows).
  while (windowCount(from, to, every) > maxPoints) every += every >= 1000 ? 1000 : 1;
  return every;
}

/** How many epoch-aligned windows of `every` ms overlap [from, to). */
export function windowCount(from: number, to: number, every: number): number {
  const first = Math.floor(from / every) * every;
  return Math.ceil((to - first) / every);
}

/** Validates a query (from an untrusted caller) and resolves its defaults. Throws SensorpipeError. */
export function resolveHistoryQuery(input: unknown): ResolvedHistoryQuery {
  const parsed = HistoryQuerySchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join('.') || 'query';
    const code = issue?.path[0] === 'from' || issue?.path[0] === 'to' ? 'QUERY_RANGE_INVALID' : 'QUERY_INVALID';
    throw new SensorpipeError(code, `${where}: ${issue?.message ?? 'invalid'}`, { param: where });
  }
  const q = parsed.data;
  const fn = q.fn ?? 'mean';
  if (!isQueryFn(fn)) {
    throw new SensorpipeError('QUERY_FUNCTION_UNKNOWN', `fn must be one of raw, ${AGGREGATE_FNS.join(', ')}`, { param: 'fn' });
  }
  if (q.to <= q.from) {
    throw new SensorpipeError('QUERY_RANGE_INVALID', 'from must be before to (the range is [from, to))', { from: q.from, to: q.to });
  }
  const maxPoints = q.maxPoints ?? QUERY_LIMITS.defaultMaxPoints;
  const metrics = [...new Set(q.metrics)];
  if (fn === 'raw') {
    if (q.every !== undefined) throw new SensorpipeError('QUERY_INVALID', 'every applies to aggregations, not to raw queries', { param: 'every' });
    if (q.to - q.from > QUERY_LIMITS.maxRawRangeMs) {
      throw new SensorpipeError('QUERY_RANGE_INVALID', `a raw query spans at most ${QUERY_LIMITS.maxRawRangeMs / 3_600_000} h; aggregate longer ranges`, {
        maxRangeMs: QUERY_LIMITS.maxRawRangeMs,
      });
    }
    return { device: q.device, metrics, from: q.from, to: q.to, fn, every: null, maxPoints };
  }
  if (q.every !== undefined) {
    if (q.every < QUERY_LIMITS.minEveryMs) throw new SensorpipeError('QUERY_INVALID', 'every must be at least 1 ms', { param: 'every' });
    const windows = windowCount(q.from, q.to, q.every);
    if (windows > maxPoints) {
      throw new SensorpipeError('QUERY_RANGE_INVALID', `the range holds ${windows} windows of ${q.every} ms, more than maxPoints (${maxPoints})`, {
        windows,
        maxPoints,
      });
    }
    return { device: q.device, metrics, from: q.from, to: q.to, fn, every: q.every, maxPoints };
  }
  return { device: q.device, metrics, from: q.from, to: q.to, fn, every: autoWindowMs(q.from, q.to, maxPoints), maxPoints };
}

/**
 * The same query from URL search parameters (the display's /api/history): `metrics` is comma-separated,
 * `from`/`to` are ms since the epoch or ISO-8601 dates, `every` is ms. Throws SensorpipeError.
 */
export function historyQueryFromParams(params: URLSearchParams, device: string): ResolvedHistoryQuery {
  const time = (name: string): number | undefined => {
    const value = params.get(name);
    if (value === null || value === '') return undefined;
    if (/^-?\d+$/.test(value)) return Number(value);
    const parsed = Date.parse(value);
    if (Number.isNaN(parsed)) throw new SensorpipeError('QUERY_RANGE_INVALID', `${name} is neither ms since the epoch nor an ISO-8601 date`, { param: name });
    return parsed;
  };
  const int = (name: string): number | undefined => {
    const value = params.get(name);
    if (value === null || value === '') return undefined;
    if (!/^-?\d+$/.test(value)) throw new SensorpipeError('QUERY_INVALID', `${name} must be a whole number`, { param: name });
    return Number(value);
  };
  const metrics = (params.get('metrics') ?? '').split(',').filter((m) => m !== '');
  const fn = params.get('fn');
  return resolveHistoryQuery({
    device,
    metrics,
    from: time('from'),
    to: time('to'),
    ...(fn !== null && fn !== '' ? { fn } : {}),
    ...(int('every') !== undefined ? { every: int('every') } : {}),
    ...(int('maxPoints') !== undefined ? { maxPoints: int('maxPoints') } : {}),
  });
}
