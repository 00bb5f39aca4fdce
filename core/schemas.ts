/**
 * Message schemas (protocol v1): the single source of truth for everything that crosses a process
 * boundary on MQTT. Types are inferred from the schemas. Limits come from ./limits.ts.
 */
import { z } from 'zod';
import { REJECT_REASONS } from './errors.ts';
import { LIMITS } from './limits.ts';

export const PROTOCOL_VERSION = 1 as const;

/**
 * Names that are never a device id or a metric, because every component uses ids and metric names as
 * keys (of maps, of JSON objects in the API, of the live feed): the names of Object.prototype, and
 * `prototype`, which with `constructor` spells the path to it (`x.constructor.prototype`). The slug
 * patterns already exclude all of them but `constructor` and `prototype`; the rest stay listed so the
 * rule does not depend on the pattern.
 */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([...Object.getOwnPropertyNames(Object.prototype), 'prototype']);

export const DeviceIdSchema = z
  .string()
  .max(LIMITS.deviceIdMaxLength)
  .regex(LIMITS.deviceIdPattern, 'device id must be a lowercase slug: a-z, 0-9 and "-", starting with a letter or digit')
  .refine((id) => !RESERVED_NAMES.has(id), 'device id is reserved');
export type DeviceId = z.infer<typeof DeviceIdSchema>;

export const MetricNameSchema = z
  .string()
  .max(LIMITS.metricNameMaxLength)
  .regex(LIMITS.metricNamePattern, 'metric name must be lowercase: a-z, 0-9 and "_", starting with a letter')
  .refine((name) => !RESERVED_NAMES.has(name), 'metric name is reserved');
export type MetricName = z.infer<typeof MetricNameSchema>;

/** A reading value: a finite double. JSON cannot carry NaN or Infinity; 1e400 parses to Infinity. */
export const MetricValueSchema = z.number().finite();

export const TimestampSchema = z.number().int().min(LIMITS.minTimestampMs).max(LIMITS.maxTimestampMs);
export const SeqSchema = z.number().int().min(0).max(LIMITS.maxSeq);

/**
 * A record (names → values) that refuses a `__proto__` key, which z.record skips without a word (it
 * cannot copy it onto a plain object), instead of returning a different object than was sent. For
 * schemas whose input does not go through core/decode.ts's member count (which catches such a key, and
 * a key given twice, against the JSON text): what clients read from /live and the API.
 */
export function strictRecord<K extends z.core.$ZodRecordKey, V extends z.ZodType>(key: K, value: V) {
  return z
    .unknown()
    .check((ctx) => {
      if (typeof ctx.value === 'object' && ctx.value !== null && Object.hasOwn(ctx.value, '__proto__')) {
        ctx.issues.push({ code: 'custom', message: 'a key named __proto__ is not allowed', input: ctx.value });
      }
    })
    .pipe(z.record(key, value));
}

/**
 * Metric name → value. zod's record skips a `__proto__` key without a word (it cannot copy it onto a
 * plain object); decodeTelemetry refuses any payload member the parsed message does not hold, so such a
 * key makes the message PAYLOAD_INVALID instead of vanishing from what is signed.
 */
export const MetricValuesSchema = z
  .record(MetricNameSchema, MetricValueSchema)
  .refine((values) => Object.keys(values).length >= 1, 'a reading has at least one metric')
  .refine(
    (values) => Object.keys(values).length <= LIMITS.maxMetricsPerReading,
    `a reading has at most ${LIMITS.maxMetricsPerReading} metrics`,
  );
export type MetricValues = z.infer<typeof MetricValuesSchema>;

export const ReadingSchema = z.strictObject({
  seq: SeqSchema,
  ts: TimestampSchema,
  values: MetricValuesSchema,
});
export type Reading = z.infer<typeof ReadingSchema>;

const ReadingListSchema = z
  .array(ReadingSchema)
  .min(1)
  .max(LIMITS.maxReadingsPerMessage)
  .refine(
    (readings) => readings.every((r, i) => i === 0 || r.seq > readings[i - 1]!.seq),
    'sequence numbers in a message must be strictly increasing',
  );

/** Base64 (RFC 4648 §4, padded) of a 32-byte HMAC or a 64-byte Ed25519 signature. */
export const SignatureSchema = z.string().max(128).regex(/^[A-Za-z0-9+/]+={0,2}$/, 'signature must be base64');

/**
 * A telemetry message on `sensors/{device}/telemetry`: one reading, or a batch of readings (a device
 * catching up after being offline), each with its own sequence number and original timestamp.
 */
export const TelemetryMessageSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  device: DeviceIdSchema,
  readings: ReadingListSchema,
  sig: SignatureSchema,
});
export type TelemetryMessage = z.infer<typeof TelemetryMessageSchema>;
/** The part of a telemetry message that is signed (everything but `sig`). */
export type TelemetryBody = Omit<TelemetryMessage, 'sig'>;

export const DeviceStateSchema = z.enum(['online', 'offline']);

/** Retained status on `sensors/{device}/status`: published by the device (and its Will) and by the broker. */
export const StatusMessageSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  device: DeviceIdSchema,
  state: DeviceStateSchema,
  since: TimestampSchema,
  reason: z.enum(['connected', 'clean', 'will', 'keepalive', 'socket', 'revoked', 'takeover', 'shutdown']).optional(),
});
export type StatusMessage = z.infer<typeof StatusMessageSchema>;

/** Printable metadata (no control characters); spaces, commas, quotes and non-ASCII are fine. */
export const MetaValueSchema = z
  .string()
  .min(1)
  .max(LIMITS.metaValueMaxLength)
  .regex(/^[^\p{Cc}]+$/u, 'metadata must not contain control characters');

/** A device's own alert rules (core/alert-rules.ts: `temperature > 35 clear 33 for 30s; silent 2m`). */
export const MetaAlertsSchema = z.string().min(1).max(256).regex(/^[^\p{Cc}]+$/u, 'metadata must not contain control characters');

export const DeviceMetaSchema = z.strictObject({
  site: MetaValueSchema.optional(),
  model: MetaValueSchema.optional(),
  profile: MetaValueSchema.optional(),
  alerts: MetaAlertsSchema.optional(),
});
export type DeviceMeta = z.infer<typeof DeviceMetaSchema>;

/** How a stored reading was authenticated: `signed` (its signature verified) or `broker` (only the MQTT login). */
export const ReadingTrustSchema = z.enum(['signed', 'broker']);
export type ReadingTrust = z.infer<typeof ReadingTrustSchema>;

/**
 * What ingest republishes on `pipeline/readings/{device}` once a message is verified and accepted:
 * the live feed. Only verified readings ever appear here.
 */
export const VerifiedReadingsSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  device: DeviceIdSchema,
  readings: z.array(ReadingSchema).min(1).max(LIMITS.maxReadingsPerMessage),
  meta: DeviceMetaSchema,
  verifiedAt: z.number().int(),
  /**
   * `broker`: the readings of a broker-authenticated device (PROTOCOL.md §7), unsigned, checked only by
   * the broker's login and topic ACL; their `seq` is 0 (they have none). Absent: signed and verified.
   */
  trust: z.literal('broker').optional(),
});
export type VerifiedReadings = z.infer<typeof VerifiedReadingsSchema>;

/** Retained on `pipeline/completeness/{device}` by ingest: how many readings arrived and how many are missing. */
export const CompletenessMessageSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  device: DeviceIdSchema,
  received: z.number().int().min(0),
  missing: z.number().int().min(0),
  ratio: z.number().min(0).max(1),
  at: z.number().int(),
});
export type CompletenessMessage = z.infer<typeof CompletenessMessageSchema>;

/**
 * Retained on `pipeline/counts/{device}` by ingest, for every registered device it has seen a message
 * from: what became of that device's messages since `since` (ms; counting survives ingest restarts).
 * `accepted` counts readings stored, `duplicates` readings acknowledged again without a write, and
 * `rejected` quarantined messages by reason (a reason never seen is absent). The display shows them per
 * device; the alerts component turns their increase over a window into rejection alerts.
 */
export const DeviceCountsMessageSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  device: DeviceIdSchema,
  accepted: z.number().int().min(0),
  duplicates: z.number().int().min(0),
  rejected: z.partialRecord(z.enum(REJECT_REASONS), z.number().int().min(0)),
  since: z.number().int(),
  at: z.number().int(),
});
export type DeviceCountsMessage = z.infer<typeof DeviceCountsMessageSchema>;
