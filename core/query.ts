/**
 * History query parameters as they arrive over HTTP (the display's /api/history): one zod schema, so the
 * display parses URL parameters the same way everywhere and gets the store's own error codes back.
 * The output has the shape of the store port's `RangeQuery`; the store then checks the rest (ranges,
 * window counts, limits) in store/query.ts, with the same codes.
 *
 *   ?metrics=temperature,humidity&from=2026-01-05T00:00:00Z&to=1767657600000&fn=max&every=60000&maxPoints=500&mode=raw
 *
 * `from`/`to`: ms since the epoch, an ISO-8601 date, `now`, or a time relative to now (`-15m`, `-1h`,
 * `now-7d`); `to` is exclusive; they default to `-1h` and `now`. `every`: ms or a duration (`30s`, `5m`).
 * Codes: QUERY_INVALID (a malformed parameter), QUERY_RANGE_INVALID (from/to/every unreadable, or from
 * not before to), QUERY_FUNCTION_UNKNOWN (fn).
 */
import { z } from 'zod';
import { SensorpipeError, type ErrorCode } from './errors.ts';
import { DeviceIdSchema, MetricNameSchema } from './schemas.ts';

/** Aggregations over a window. `last` is the value with the greatest timestamp in the window. */
export const AGGREGATE_FUNCTIONS = ['mean', 'min', 'max', 'last', 'count'] as const;
export type AggregateFunction = (typeof AGGREGATE_FUNCTIONS)[number];

const WHOLE = /^-?\d{1,16}$/;
const RELATIVE = /^(?:now)?(?:-(\d{1,9})(ms|s|m|h|d|w))?$/;
const DURATION = /^(\d{1,9})(ms|s|m|h|d|w)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/**
 * A point in time as the display's users write it: ms since the epoch, an ISO-8601 date, `now`, or
 * `-1h` / `now-1h` (relative to `now`). NaN when unreadable.
 */
export function parseTimeParam(text: string, now: number): number {
  if (WHOLE.test(text)) return Number(text);
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) return Date.parse(text);
  const relative = text === '' ? null : RELATIVE.exec(text);
  if (relative === null) return Number.NaN;
  return relative[1] === undefined ? now : now - Number(relative[1]) * UNIT_MS[relative[2] as keyof typeof UNIT_MS];
}

/** A window length: ms, or a duration such as `30s`, `5m`, `1h`. NaN when unreadable. */
export function parseDurationParam(text: string): number {
  if (WHOLE.test(text)) return Number(text);
  const match = DURATION.exec(text);
  return match === null ? Number.NaN : Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

const timeAt = (now: number) =>
  z.string().transform((text, ctx) => {
    const ms = parseTimeParam(text, now);
    if (!Number.isSafeInteger(ms)) {
      ctx.addIssue({ code: 'custom', message: 'must be ms since the epoch, an ISO-8601 date, now, or relative such as -1h' });
      return z.NEVER;
    }
    return ms;
  });
const duration = z.string().transform((text, ctx) => {
  const ms = parseDurationParam(text);
  if (!Number.isSafeInteger(ms)) {
    ctx.addIssue({ code: 'custom', message: 'must be whole ms or a duration such as 30s, 5m or 1h' });
    return z.NEVER;
  }
  return ms;
});
const whole = z.string().regex(WHOLE, 'must be a whole number').transform(Number);

/** URL parameters (strings) → a RangeQuery-shaped object. The device comes from the path. */
export const historyParamsSchema = (now: number) => z.strictObject({
  device: DeviceIdSchema,
  metrics: z
    .string()
    .transform((text) => [...new Set(text.split(',').filter((m) => m !== ''))])
    .pipe(z.array(MetricNameSchema).min(1))
    .optional(),
  from: timeAt(now).default(now - 3_600_000),
  to: timeAt(now).default(now),
  mode: z.enum(['raw', 'aggregate']).optional(),
  fn: z.string().optional(),
  every: duration.optional(),
  maxPoints: whole.optional(),
});

export interface HistoryParams {
  device: string;
  metrics?: string[];
  from: number;
  to: number;
  mode?: 'raw' | 'aggregate';
  fn?: AggregateFunction;
  every?: number;
  maxPoints?: number;
}

const CODE_BY_PARAM: Record<string, ErrorCode> = { from: 'QUERY_RANGE_INVALID', to: 'QUERY_RANGE_INVALID', every: 'QUERY_RANGE_INVALID' };

/** The first problem of a URL-parameter schema as a SensorpipeError naming the parameter. */
export function queryParamError(error: z.ZodError, codeByParam: Record<string, ErrorCode> = {}): SensorpipeError {
  const issue = error.issues[0];
  const param = issue?.path[0] === undefined ? 'query' : String(issue.path[0]);
  const unknown = issue?.code === 'unrecognized_keys' ? ` (unknown parameter ${issue.keys.join(', ')})` : '';
  return new SensorpipeError(codeByParam[param] ?? 'QUERY_INVALID', `${param}: ${issue?.message ?? 'invalid'}${unknown}`, { param });
}

/**
 * Parses history parameters; throws a SensorpipeError naming the parameter. `ignore` names parameters
 * the caller handles itself (the display's `format`, `token`).
 */
export function parseHistoryParams(device: string, params: URLSearchParams, now = Date.now(), ignore: readonly string[] = []): HistoryParams {
  const raw: Record<string, string> = { device };
  for (const [key, value] of params) if (value !== '' && !ignore.includes(key)) raw[key] = value;
  const parsed = historyParamsSchema(now).safeParse(raw);
  if (!parsed.success) throw queryParamError(parsed.error, CODE_BY_PARAM);
  const { fn, ...rest } = parsed.data;
  if (fn !== undefined && !(AGGREGATE_FUNCTIONS as readonly string[]).includes(fn)) {
    throw new SensorpipeError('QUERY_FUNCTION_UNKNOWN', `fn must be one of ${AGGREGATE_FUNCTIONS.join(', ')}`, { param: 'fn' });
  }
  if (rest.from >= rest.to) throw new SensorpipeError('QUERY_RANGE_INVALID', 'from must be before to', { param: 'from' });
  const result: HistoryParams = { device: rest.device, from: rest.from, to: rest.to };
  if (rest.metrics !== undefined) result.metrics = rest.metrics;
  if (rest.mode !== undefined) result.mode = rest.mode;
  if (fn !== undefined) result.fn = fn as AggregateFunction;
  if (rest.every !== undefined) result.every = rest.every;
  if (rest.maxPoints !== undefined) result.maxPoints = rest.maxPoints;
  return result;
}
