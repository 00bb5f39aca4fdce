/**
 * The display's WebSocket protocol (`/live`), both directions. One zod schema per frame; the server
 * parses what browsers send with these, the dashboard and the tests parse what the server sends.
 *
 * Client → server (JSON text frames, at most LIVE_LIMITS.maxInboundFrameBytes):
 *   {"type":"subscribe","id":"s1","devices":["boiler-7"],"metrics":["temperature"],"history":{"from":"-1h"}}
 *   {"type":"subscribe","id":"all","devices":"*","latest":true}
 *   {"type":"unsubscribe","id":"s1"}
 *
 * Server → client:
 *   welcome    once, on connect
 *   subscribed the subscription is in force (live readings for it follow)
 *   history    per device of a subscription that asked for history, before any live reading of it
 *              (`truncated` and `nextFrom` when it had to be cut)
 *   readings   live readings, many per frame: [device, seq, ts, {metric: value}], + "broker" if unsigned
 *   status     a device went online or offline
 *   error      a refused frame or subscription, with a stable code (core/errors.ts)
 *
 * History then live, without gap or overlap: for a subscription with history, the server holds that
 * device's live readings back, sends the history (store contents up to now, plus readings verified in
 * the last seconds that the store may not have yet), then releases what it held, leaving out every
 * reading (device, metric, ts) that the history already contained.
 */
import { z } from 'zod';
import { SensorpipeError } from './errors.ts';
import { DeviceIdSchema, DeviceStateSchema, MetricNameSchema, MetricValueSchema, ReadingTrustSchema, SeqSchema, strictRecord } from './schemas.ts';
import { AGGREGATE_FUNCTIONS, parseHistoryRequest, type AggregateFunction, type HistoryRequestFields } from './query.ts';

export const LIVE_PROTOCOL_VERSION = 1 as const;

export const LIVE_LIMITS = {
  maxInboundFrameBytes: 16 * 1024,
  /**
   * Frames one inbound message may come in (continuation frames; browsers send one). Each fragment the
   * server holds costs it a buffer object of its own: at ws's default of 16,384, one-byte fragments of
   * a message that never ends held about 1.9 MB per client for the 16 KiB a message may carry.
   */
  maxInboundFragments: 64,
  maxSubscriptionsPerClient: 32,
  maxDevicesPerSubscription: 1000,
  /** History is a store query per device: at most this many devices per subscription may ask for it. */
  maxHistoryDevices: 20,
  maxMetricsPerSubscription: 32,
  /**
   * Device ids named by all of a client's subscriptions together ("*" names none): what the server keeps
   * per client stays a few hundred KiB, where 32 subscriptions of 1,000 names each would be megabytes.
   */
  maxDevicesPerClient: 5000,
} as const;

const SubscriptionIdSchema = z.string().min(1).max(32).regex(/^[A-Za-z0-9_.-]+$/, 'subscription id: letters, digits, _ . -');

/** `from` as in the history API: ms, ISO-8601, `now` or relative (`-1h`). */
const TimeParamSchema = z.union([z.number().int(), z.string().max(40)]);

export const LiveSubscribeSchema = z.strictObject({
  type: z.literal('subscribe'),
  id: SubscriptionIdSchema,
  /** Device ids, or "*" for the whole fleet (devices added later included). */
  devices: z.union([z.literal('*'), z.array(DeviceIdSchema).min(1).max(LIVE_LIMITS.maxDevicesPerSubscription)]),
  /** Only these metrics (default: all). */
  metrics: z.array(MetricNameSchema).min(1).max(LIVE_LIMITS.maxMetricsPerSubscription).optional(),
  /** Only the newest value per device and metric in each frame (a fleet overview needs no more). */
  latest: z.boolean().optional(),
  /** Send each device's history from `from` first (not with devices "*"). */
  history: z
    .strictObject({
      from: TimeParamSchema,
      fn: z.enum(AGGREGATE_FUNCTIONS).optional(),
      maxPoints: z.number().int().min(1).max(10_000).optional(),
    })
    .optional(),
});
export type LiveSubscribe = z.infer<typeof LiveSubscribeSchema>;

/**
 * Most raw points per metric a history frame holds for the last seconds before live (the raw join, see
 * display/history.ts): a device that sent more in that time gets a frame marked `truncated`.
 */
export const LIVE_HISTORY_RAW_CAP = 10_000;

/** Points per device and metric when a subscription's history names no `maxPoints`. */
export const LIVE_HISTORY_DEFAULT_MAX_POINTS = 1000;

/** A subscription's history, checked: which devices, from when (to the subscription's `now`), how. */
export interface LiveHistoryRequest {
  devices: string[];
  from: number;
  fn: AggregateFunction | undefined;
  maxPoints: number;
}

/**
 * The history a subscription asks for, or undefined when it asks for none. The range goes through the
 * history API's own parser (core/query.ts), as `history.from` up to now; /live adds its limits: a list
 * of devices (not "*"), at most LIVE_LIMITS.maxHistoryDevices of them. Throws a SensorpipeError.
 */
export function parseSubscriptionHistory(frame: Pick<LiveSubscribe, 'devices' | 'history'>, now: number): LiveHistoryRequest | undefined {
  const { history } = frame;
  if (history === undefined) return undefined;
  if (frame.devices === '*') throw new SensorpipeError('QUERY_INVALID', 'history needs a list of devices, not "*"');
  const devices = [...new Set(frame.devices)];
  if (devices.length > LIVE_LIMITS.maxHistoryDevices) throw new SensorpipeError('LIMIT_EXCEEDED', `history for at most ${LIVE_LIMITS.maxHistoryDevices} devices per subscription`);
  const fields: HistoryRequestFields = { from: history.from };
  if (history.fn !== undefined) fields.fn = history.fn;
  if (history.maxPoints !== undefined) fields.maxPoints = history.maxPoints;
  const { from, fn, maxPoints } = parseHistoryRequest(fields, now, 'history.');
  return { devices, from, fn, maxPoints: maxPoints ?? LIVE_HISTORY_DEFAULT_MAX_POINTS };
}

export const LiveUnsubscribeSchema = z.strictObject({ type: z.literal('unsubscribe'), id: SubscriptionIdSchema });

export const LiveClientFrameSchema = z.discriminatedUnion('type', [LiveSubscribeSchema, LiveUnsubscribeSchema]);
export type LiveClientFrame = z.infer<typeof LiveClientFrameSchema>;

// ---- server → client ----------------------------------------------------------------------------------

/**
 * One live reading: device, seq, ts (ms), values by metric (a `__proto__` key is refused, not dropped),
 * and "broker" for a broker-authenticated device's unsigned reading (core/PROTOCOL.md §7; its seq is 0).
 * A signed reading has four elements.
 */
export const LiveReadingSchema = z.tuple([DeviceIdSchema, SeqSchema, z.number().int(), strictRecord(MetricNameSchema, MetricValueSchema), z.literal('broker').optional()]);
export type LiveReading = z.infer<typeof LiveReadingSchema>;

/** The same reading with other values, keeping its trust mark. */
export function withValues(reading: LiveReading, values: Record<string, number>): LiveReading {
  return reading.length > 4 ? [reading[0], reading[1], reading[2], values, reading[4]] : [reading[0], reading[1], reading[2], values];
}

export const LiveWelcomeSchema = z.strictObject({
  type: z.literal('welcome'),
  v: z.literal(LIVE_PROTOCOL_VERSION),
  serverTime: z.number().int(),
  tickMs: z.number().int(),
  limits: z.strictObject({ maxSubscriptions: z.number().int(), maxDevicesPerSubscription: z.number().int(), maxDevicesPerClient: z.number().int(), maxHistoryDevices: z.number().int() }),
});

export const LiveSubscribedSchema = z.strictObject({ type: z.literal('subscribed'), id: SubscriptionIdSchema, devices: z.union([z.literal('*'), z.number().int()]) });
export const LiveUnsubscribedSchema = z.strictObject({ type: z.literal('unsubscribed'), id: SubscriptionIdSchema });

/** A history point: [ts, value] raw, or [ts, value, min, max] for a window (ts = window start). */
export const HistoryPointSchema = z.union([z.tuple([z.number(), z.number()]), z.tuple([z.number(), z.number(), z.number(), z.number()])]);

export const LiveHistorySchema = z.strictObject({
  type: z.literal('history'),
  id: SubscriptionIdSchema,
  device: DeviceIdSchema,
  from: z.number().int(),
  to: z.number().int(),
  mode: z.enum(['raw', 'aggregate']),
  /** Aggregate mode: the window length (ms) of the points before `rawFrom`. */
  every: z.number().int().optional(),
  /** Aggregate mode: points from this time on are raw readings (the last seconds, for a seamless join with live). */
  rawFrom: z.number().int().optional(),
  /**
   * Present (true) only when the history was cut: its raw part had more points per metric than the
   * server sends (LIVE_HISTORY_RAW_CAP, in the last seconds before live). The frame then holds every
   * point of [from, nextFrom) and none from `nextFrom` on; the live readings follow as usual, so what
   * lies between `nextFrom` and them is missing unless read from GET /api/devices/{id}/readings.
   */
  truncated: z.literal(true).optional(),
  /** With `truncated`: the first time left out (as the history API's `nextFrom`). */
  nextFrom: z.number().int().optional(),
  /** `trust`: the trust levels of the series' stored readings (signed, broker), as the history API gives them. */
  series: z.array(z.strictObject({ metric: MetricNameSchema, points: z.array(HistoryPointSchema), trust: z.array(ReadingTrustSchema).optional() })),
});
export type LiveHistory = z.infer<typeof LiveHistorySchema>;

export const LiveReadingsSchema = z.strictObject({
  type: z.literal('readings'),
  items: z.array(LiveReadingSchema),
  /** Readings this client missed because it was too slow; only the newest value per metric was kept. */
  conflated: z.number().int().optional(),
});

export const LiveStatusSchema = z.strictObject({ type: z.literal('status'), device: DeviceIdSchema, state: DeviceStateSchema, since: z.number().int() });

export const LiveErrorSchema = z.strictObject({ type: z.literal('error'), code: z.string(), message: z.string(), id: z.string().optional() });

export const LiveServerFrameSchema = z.discriminatedUnion('type', [
  LiveWelcomeSchema,
  LiveSubscribedSchema,
  LiveUnsubscribedSchema,
  LiveHistorySchema,
  LiveReadingsSchema,
  LiveStatusSchema,
  LiveErrorSchema,
]);
export type LiveServerFrame = z.infer<typeof LiveServerFrameSchema>;

/** WebSocket close codes the server uses (RFC 6455 §7.4: 4000–4999 are ours). */
export const LIVE_CLOSE = {
  policy: 1008,
  tooBig: 1009,
  /** Too slow for too long: the client did not read its frames. */
  slow: 4001,
  /** Too many bad frames. */
  badFrames: 4002,
  shutdown: 1001,
} as const;
