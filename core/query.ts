/**
 * History query parameters as they arrive over HTTP (the display's /api/history): one zod schema, so the
 * display parses URL parameters the same way everywhere and gets the store's own error codes back.
 * The output has the shape of the store port's `RangeQuery`; the store then checks the rest (ranges,
 * window counts, limits) in store/query.ts, with the same codes.
 *
 *   ?metrics=temperature,humidity&from=2026-01-05T00:00:00Z&to=1767657600000&fn=max&every=60000&maxPoints=500&mode=raw
 *
 * `from`/`to`: ms since the epoch or an ISO-8601 date; `to` is exclusive. Codes: QUERY_INVALID (a
 * malformed parameter), QUERY_RANGE_INVALID (from/to/every unreadable), QUERY_FUNCTION_UNKNOWN (fn).
 */
import { z } from 'zod';
import { SensorpipeError, type ErrorCode } from './errors.ts';
import { DeviceIdSchema, MetricNameSchema } from './schemas.ts';

/** Aggregations over a window. `last` is the value with the greatest timestamp in the window. */
export const AGGREGATE_FUNCTIONS = ['mean', 'min', 'max', 'last', 'count'] as const;
export type AggregateFunction = (typeof AGGREGATE_FUNCTIONS)[number];

const WHOLE = /^-?\d{1,16}$/;

const time = z.string().transform((text, ctx) => {
  const ms = WHOLE.test(text) ? Number(text) : /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (!Number.isSafeInteger(ms)) {
    ctx.addIssue({ code: 'custom', message: 'must be ms since the epoch or an ISO-8601 date' });
    return z.NEVER;
  }
  return ms;
});
const whole = z.string().regex(WHOLE, 'must be a whole number').transform(Number);

/** URL parameters (strings) → a RangeQuery-shaped object. The device comes from the path. */
export const HistoryParamsSchema = z.strictObject({
  device: DeviceIdSchema,
  metrics: z
    .string()
    .transform((text) => [...new Set(text.split(',').filter((m) => m !== ''))])
    .pipe(z.array(MetricNameSchema).min(1))
    .optional(),
  from: time,
  to: time,
  mode: z.enum(['raw', 'aggregate']).optional(),
  fn: z.string().optional(),
  every: whole.optional(),
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

/** Parses history parameters; throws a SensorpipeError naming the parameter. */
export function parseHistoryParams(device: string, params: URLSearchParams): HistoryParams {
  const raw: Record<string, string> = { device };
  for (const [key, value] of params) if (value !== '') raw[key] = value;
  const parsed = HistoryParamsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const param = issue?.path[0] === undefined ? 'query' : String(issue.path[0]);
    const unknown = issue?.code === 'unrecognized_keys' ? ` (unknown parameter ${issue.keys.join(', ')})` : '';
    throw new SensorpipeError(CODE_BY_PARAM[param] ?? 'QUERY_INVALID', `${param}: ${issue?.message ?? 'invalid'}${unknown}`, { param });
  }
  const { fn, ...rest } = parsed.data;
  if (fn !== undefined && !(AGGREGATE_FUNCTIONS as readonly string[]).includes(fn)) {
    throw new SensorpipeError('QUERY_FUNCTION_UNKNOWN', `fn must be one of ${AGGREGATE_FUNCTIONS.join(', ')}`, { param: 'fn' });
  }
  const result: HistoryParams = { device: rest.device, from: rest.from, to: rest.to };
  if (rest.metrics !== undefined) result.metrics = rest.metrics;
  if (rest.mode !== undefined) result.mode = rest.mode;
  if (fn !== undefined) result.fn = fn as AggregateFunction;
  if (rest.every !== undefined) result.every = rest.every;
  if (rest.maxPoints !== undefined) result.maxPoints = rest.maxPoints;
  return result;
}
