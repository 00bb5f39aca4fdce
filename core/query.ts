/**
 * History requests: the one parser for both ways of asking, the display's HTTP API
 * (`/api/devices/{id}/readings`, URL parameters) and a `/live` subscription's `history` (JSON, with the
 * extra limits of core/live.ts). The output has the shape of the store port's `RangeQuery`; the store
 * then checks the rest (ranges, window counts, limits) in store/query.ts, with the same codes.
 *
 *   ?metrics=temperature,humidity&from=2026-01-05T00:00:00Z&to=1767657600000&fn=max&every=60000&maxPoints=500&mode=raw
 *
 * `from`/`to`: ms since the epoch, an ISO-8601 date, `now`, or a time relative to now (`-15m`, `-1h`,
 * `now-7d`); `to` is exclusive; they default to `-1h` and `now`. `every`: ms or a duration (`30s`, `5m`);
 * durations follow core/duration.ts. Codes: QUERY_INVALID (a malformed parameter), QUERY_RANGE_INVALID
 * (from/to/every unreadable, or from not before to), QUERY_FUNCTION_UNKNOWN (fn).
 */
import { z } from 'zod';
import { parseDurationMs } from './duration.ts';
import { SensorpipeError, type ErrorCode } from './errors.ts';
import { DeviceIdSchema, MetricNameSchema, ReadingTrustSchema } from './schemas.ts';

/** Aggregations over a window. `last` is the value with the greatest timestamp in the window. */
export const AGGREGATE_FUNCTIONS = ['mean', 'min', 'max', 'last', 'count'] as const;
export type AggregateFunction = (typeof AGGREGATE_FUNCTIONS)[number];

const WHOLE = /^-?\d{1,16}$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}/;
const HOUR_MS = 3_600_000;

/**
 * A point in time as the display's users write it: ms since the epoch, an ISO-8601 date, `now`, or
 * `-1h` / `now-1h` (relative to `now`; the duration grammar of core/duration.ts, with its unit, since a
 * bare `-5` is ms since the epoch). NaN when unreadable.
 */
export function parseTimeParam(text: string, now: number): number {
  if (WHOLE.test(text)) return Number(text);
  if (ISO_DATE.test(text)) return Date.parse(text);
  if (text === 'now') return now;
  const ago = text.startsWith('now-') ? text.slice(4) : text.startsWith('-') ? text.slice(1) : undefined;
  return ago === undefined ? Number.NaN : now - parseDurationMs(ago, { unitRequired: true });
}

// Each field takes URL text (/api) or a JSON value (/live), and reads both the same way.
const timeAt = (now: number) =>
  z.union([z.number(), z.string()]).transform((value, ctx) => {
    const ms = typeof value === 'number' ? value : parseTimeParam(value, now);
    if (!Number.isSafeInteger(ms)) {
      ctx.addIssue({ code: 'custom', message: 'must be ms since the epoch, an ISO-8601 date, now, or relative such as -1h' });
      return z.NEVER;
    }
    return ms;
  });
const duration = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const ms = typeof value === 'number' ? value : parseDurationMs(value);
  if (!Number.isSafeInteger(ms) || ms < 0) {
    ctx.addIssue({ code: 'custom', message: 'must be whole ms or a duration such as 30s, 5m or 1h' });
    return z.NEVER;
  }
  return ms;
});
const whole = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const n = typeof value === 'number' ? value : WHOLE.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    ctx.addIssue({ code: 'custom', message: 'must be a whole number' });
    return z.NEVER;
  }
  return n;
});

/**
 * A history request's fields, before the checks across fields. The device is optional here: the HTTP
 * API names one (from its path), a /live subscription names its own list (checked in core/live.ts).
 */
export const historyRequestSchema = (now: number) => z.strictObject({
  device: DeviceIdSchema.optional(),
  metrics: z
    .string()
    .transform((text) => [...new Set(text.split(',').filter((m) => m !== ''))])
    .pipe(z.array(MetricNameSchema).min(1))
    .optional(),
  from: timeAt(now).default(now - HOUR_MS),
  to: timeAt(now).default(now),
  mode: z.enum(['raw', 'aggregate']).optional(),
  fn: z.string().optional(),
  every: duration.optional(),
  maxPoints: whole.optional(),
});
export type HistoryRequestFields = z.input<ReturnType<typeof historyRequestSchema>>;

/** A history request, parsed: the store port's `RangeQuery` without (or with) its device. */
export interface HistoryRequest {
  device?: string;
  metrics?: string[];
  from: number;
  to: number;
  mode?: 'raw' | 'aggregate';
  fn?: AggregateFunction;
  every?: number;
  maxPoints?: number;
}

export interface HistoryParams extends HistoryRequest {
  device: string;
}

const CODE_BY_PARAM: Record<string, ErrorCode> = { from: 'QUERY_RANGE_INVALID', to: 'QUERY_RANGE_INVALID', every: 'QUERY_RANGE_INVALID' };

/**
 * The first problem of a URL-parameter schema as a SensorpipeError naming the parameter; `prefix`
 * places it in a bigger object (`history.` for a /live subscription).
 */
export function queryParamError(error: z.ZodError, codeByParam: Record<string, ErrorCode> = {}, prefix = ''): SensorpipeError {
  const issue = error.issues[0];
  const field = issue?.path[0] === undefined ? 'query' : String(issue.path[0]);
  // An unknown parameter is named itself in `param` (cut: the name is the client's text), not the query as a whole.
  const unknownKey = issue?.code === 'unrecognized_keys' ? issue.keys[0]?.slice(0, 64) : undefined;
  const param = `${prefix}${unknownKey ?? field}`;
  const unknown = issue?.code === 'unrecognized_keys' ? ` (unknown parameter ${issue.keys.join(', ')})` : '';
  return new SensorpipeError(codeByParam[field] ?? 'QUERY_INVALID', `${prefix}${field}: ${issue?.message ?? 'invalid'}${unknown}`, { param });
}

/**
 * The one history-request parser, for the HTTP API's URL parameters and a /live subscription's
 * `history` alike: times, durations, the function, then `from` before `to` (`to` defaults to now).
 * Throws a SensorpipeError naming the field: QUERY_INVALID (malformed), QUERY_RANGE_INVALID (a time or
 * window unreadable, or from not before to), QUERY_FUNCTION_UNKNOWN (fn). `prefix` names the fields
 * as they sit in the caller's message (`history.from`).
 */
export function parseHistoryRequest(fields: HistoryRequestFields, now: number, prefix = ''): HistoryRequest {
  const parsed = historyRequestSchema(now).safeParse(fields);
  if (!parsed.success) throw queryParamError(parsed.error, CODE_BY_PARAM, prefix);
  const { fn, ...rest } = parsed.data;
  if (fn !== undefined && !(AGGREGATE_FUNCTIONS as readonly string[]).includes(fn)) {
    throw new SensorpipeError('QUERY_FUNCTION_UNKNOWN', `${prefix}fn must be one of ${AGGREGATE_FUNCTIONS.join(', ')}`, { param: `${prefix}fn` });
  }
  if (rest.from >= rest.to) {
    throw new SensorpipeError('QUERY_RANGE_INVALID', `${prefix}from must be before ${fields.to === undefined ? 'now' : 'to'}`, { param: `${prefix}from` });
  }
  const result: HistoryRequest = rest.device === undefined ? { from: rest.from, to: rest.to } : { device: rest.device, from: rest.from, to: rest.to };
  if (rest.metrics !== undefined) result.metrics = rest.metrics;
  if (rest.mode !== undefined) result.mode = rest.mode;
  if (fn !== undefined) result.fn = fn as AggregateFunction;
  if (rest.every !== undefined) result.every = rest.every;
  if (rest.maxPoints !== undefined) result.maxPoints = rest.maxPoints;
  return result;
}

/**
 * A URL's query parameters as an object for a strict schema, every one of them an own member whatever
 * its name: the object has no prototype, so `?__proto__=x` is a parameter like any other, which the
 * schema refuses as unknown, rather than a write to a prototype setter that makes it vanish. A parameter
 * given twice is QUERY_INVALID: the API would read one copy and a proxy, a cache or a log another (as a
 * JSON key given twice is PAYLOAD_INVALID, core/decode.ts). `ignore` names parameters the caller reads
 * itself (the display's `format`, `token`), checked for repeats too; empty ones count as absent.
 */
export function queryParamsOf(params: URLSearchParams, ignore: readonly string[] = []): Record<string, string> {
  const raw = Object.create(null) as Record<string, string>;
  const seen = new Set<string>();
  for (const [key, value] of params) {
    if (seen.has(key)) throw new SensorpipeError('QUERY_INVALID', `${key.slice(0, 64)}: given more than once`, { param: key.slice(0, 64) });
    seen.add(key);
    if (value !== '' && !ignore.includes(key)) raw[key] = value;
  }
  return raw;
}

/**
 * History parameters of `/api/devices/{device}/readings`, through queryParamsOf and parseHistoryRequest.
 * `ignore` names parameters the caller handles itself (the display's `format`, `token`).
 */
export function parseHistoryParams(device: string, params: URLSearchParams, now = Date.now(), ignore: readonly string[] = []): HistoryParams {
  const raw = queryParamsOf(params, ignore);
  if ('device' in raw) throw new SensorpipeError('QUERY_INVALID', 'device: named by the path, not a query parameter (unknown parameter device)', { param: 'device' });
  raw.device = device;
  return { ...parseHistoryRequest(raw, now), device };
}

/**
 * The answer to a history request (`/api/devices/{id}/readings` as JSON): the store port's QueryResult
 * (store/port.ts), which a test holds to this schema on a real answer. A point is a raw reading, or a
 * window (`ts` its start) with the envelope `min`/`max` of its values.
 */
export const HistoryResultSchema = z.strictObject({
  device: DeviceIdSchema,
  from: z.number().int(),
  /** Exclusive. */
  to: z.number().int(),
  mode: z.enum(['raw', 'aggregate']),
  fn: z.enum(AGGREGATE_FUNCTIONS).optional(),
  /** The window length used (ms), for aggregates. */
  every: z.number().int().optional(),
  /** True when a raw series had more points than maxPoints and the answer was cut. */
  truncated: z.boolean(),
  /** With `truncated`: ask again from here (as `from`) for the rest. */
  nextFrom: z.number().int().optional(),
  series: z.array(
    z.strictObject({
      metric: MetricNameSchema,
      points: z.array(z.strictObject({ ts: z.number().int(), value: z.number(), min: z.number().optional(), max: z.number().optional() })),
      /** The trust levels of the series' readings in the range, sorted; absent for a series without points. */
      trust: z.array(ReadingTrustSchema).optional(),
    }),
  ),
});
