/**
 * The display's HTTP API: the query parameters it accepts and the JSON it answers, one zod schema each
 * (the history parameters live in ./query.ts, shared with the store). Errors are always
 * `{"code": "...", "message": "..."}` with the HTTP status of the code (core/errors.ts).
 *
 *   GET /api/devices?status=online&site=Plant%203&profile=env&q=boiler
 *   GET /api/devices/{id}/readings?metrics=temperature&from=-1h&to=now&fn=mean&every=1m&format=csv
 *   GET /api/alerts?device=boiler-7&limit=50
 *   GET /api/quarantine?device=boiler-7&reason=READING_BAD_SIGNATURE&limit=100&before=1733500000000:3
 *   GET /healthz
 */
import { z } from 'zod';
import { queryParamError, queryParamsOf } from './query.ts';
import { PAYLOAD_FORMATS } from './mappings.ts';
import { DeviceIdSchema, DeviceMetaSchema, DeviceStateSchema, MetaValueSchema, ReadingTrustSchema, strictRecord } from './schemas.ts';
import { REJECT_REASONS } from './errors.ts';
import { AlertEventSchema, AlertRuleStateSchema, AlertSeveritySchema, type AlertSeverity } from './alerts.ts';

export const DevicesQuerySchema = z.strictObject({
  status: z.enum(['online', 'offline', 'revoked']).optional(),
  site: MetaValueSchema.optional(),
  profile: MetaValueSchema.optional(),
  /** Text search over id, site and model (case-insensitive substring). */
  q: z.string().max(64).optional(),
});
export type DevicesQuery = z.infer<typeof DevicesQuerySchema>;

/** A device's alerts in one line of the device list. */
export const DeviceAlertsSummarySchema = z.strictObject({
  firing: z.number().int(),
  pending: z.number().int(),
  /** The most severe firing rule's severity; null while none fires. */
  worst: AlertSeveritySchema.nullable(),
});
export type DeviceAlertsSummary = z.infer<typeof DeviceAlertsSummarySchema>;

/**
 * What became of a device's messages, from ingest's retained pipeline/counts/{id} (core/schemas.ts
 * DeviceCountsMessageSchema): readings stored, readings that were duplicates, rejected messages by reason
 * (a reason never seen is absent), counted since `since` (ms).
 */
export const DeviceCountsSummarySchema = z.strictObject({
  accepted: z.number().int().min(0),
  duplicates: z.number().int().min(0),
  rejected: z.partialRecord(z.enum(REJECT_REASONS), z.number().int().min(0)),
  since: z.number().int(),
});
export type DeviceCountsSummary = z.infer<typeof DeviceCountsSummarySchema>;

export const DeviceSummarySchema = z.strictObject({
  id: DeviceIdSchema,
  registered: z.enum(['active', 'revoked']),
  /**
   * How its readings are authenticated (core/PROTOCOL.md §7): `signed` (every message signed with the
   * device's key), or `broker` (a broker-authenticated device: only its MQTT login; unsigned payloads).
   */
  trust: ReadingTrustSchema,
  /** A signed device's signature algorithm (core/PROTOCOL.md); absent for a broker-authenticated one. */
  alg: z.enum(['hmac-sha256', 'ed25519']).optional(),
  /** A broker-authenticated device's payload mapping (flat-json, pointers, tasmota, shelly-gen2). */
  payload: z.enum(PAYLOAD_FORMATS).optional(),
  /** Units its pointers mapping gives its metrics, if any. */
  units: strictRecord(z.string(), z.string()).optional(),
  meta: DeviceMetaSchema,
  state: DeviceStateSchema,
  /** When the device went online or offline (ms), if known. */
  since: z.number().int().nullable(),
  /** Newest reading or status change seen (ms), if any. */
  lastSeen: z.number().int().nullable(),
  /** Newest value per metric, with its timestamp. */
  latest: strictRecord(z.string(), z.strictObject({ ts: z.number().int(), value: z.number() })),
  /** Readings received vs missing (sequence gaps), from ingest; null until ingest reported it. */
  completeness: z.strictObject({ received: z.number().int(), missing: z.number().int(), ratio: z.number() }).nullable(),
  /** Readings accepted, duplicates and rejections by reason, from ingest; null until ingest reported them. */
  counts: DeviceCountsSummarySchema.nullable(),
  /** Its alerts, from the alerts component's retained state (alerts/{id}); absent until that was received. */
  alerts: DeviceAlertsSummarySchema.optional(),
});
export type DeviceSummary = z.infer<typeof DeviceSummarySchema>;

export const DevicesResponseSchema = z.strictObject({
  devices: z.array(DeviceSummarySchema),
  /** Devices before filtering. */
  total: z.number().int(),
  online: z.number().int(),
});
export type DevicesResponse = z.infer<typeof DevicesResponseSchema>;

export const HealthResponseSchema = z.strictObject({
  ok: z.boolean(),
  broker: z.boolean(),
  store: z.boolean(),
  storeDetail: z.string().optional(),
  clients: z.number().int(),
});

/** Parses /api/devices parameters (read as core/query.ts's queryParamsOf reads them); throws QUERY_INVALID naming the parameter. */
export function parseDevicesQuery(params: URLSearchParams, ignore: readonly string[] = []): DevicesQuery {
  const parsed = DevicesQuerySchema.safeParse(queryParamsOf(params, ignore));
  if (!parsed.success) throw queryParamError(parsed.error);
  return parsed.data;
}

// ---- alerts (issue 19): the alerts component's state (core/alerts.ts), as GET /api/alerts serves it ----

/** Most entries of each list /api/alerts answers with; `limit` defaults to ALERTS_DEFAULT_LIMIT. */
export const ALERTS_MAX_LIMIT = 500;
export const ALERTS_DEFAULT_LIMIT = 100;

export const AlertsQuerySchema = z.strictObject({
  /** Only this device's alerts; the answer then also lists every rule of the device (`rules`). */
  device: DeviceIdSchema.optional(),
  limit: z
    .string()
    .regex(/^\d{1,6}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(1).max(ALERTS_MAX_LIMIT))
    .optional(),
});
export type AlertsQuery = z.infer<typeof AlertsQuerySchema>;

/** A rule that is past its threshold now (pending or firing), with its device. */
export const ActiveAlertSchema = AlertRuleStateSchema.extend({ device: DeviceIdSchema, state: z.enum(['pending', 'firing']) });
export type ActiveAlert = z.infer<typeof ActiveAlertSchema>;

export const AlertsResponseSchema = z.strictObject({
  /** Firing and pending rules across the fleet (or of `device`), newest `since` first, at most `limit`. */
  active: z.array(ActiveAlertSchema),
  /** How many rules fire, and are pending, before `limit`. */
  firing: z.number().int(),
  pending: z.number().int(),
  /** The devices' recent events (each device's newest ones, core/alerts.ts) merged, newest first, at most `limit`. */
  recent: z.array(AlertEventSchema),
  /** With `device`: every rule that applies to it, in any state (thresholds for its charts). */
  rules: z.array(AlertRuleStateSchema).optional(),
});
export type AlertsResponse = z.infer<typeof AlertsResponseSchema>;

/** Severities from least to most severe: the order a "worst" is picked by. */
export const ALERT_SEVERITY_RANK: Record<AlertSeverity, number> = { info: 0, warning: 1, critical: 2 };

/** The most severe of `severities`, or null for none. */
export function worstSeverity(severities: Iterable<AlertSeverity>): AlertSeverity | null {
  let worst: AlertSeverity | null = null;
  for (const severity of severities) if (worst === null || ALERT_SEVERITY_RANK[severity] > ALERT_SEVERITY_RANK[worst]) worst = severity;
  return worst;
}

/** Parses /api/alerts parameters; throws QUERY_INVALID naming the parameter. */
export function parseAlertsQuery(params: URLSearchParams, ignore: readonly string[] = []): AlertsQuery {
  const parsed = AlertsQuerySchema.safeParse(queryParamsOf(params, ignore));
  if (!parsed.success) throw queryParamError(parsed.error);
  return parsed.data;
}

// ---- the quarantine (issue 19): what ingest rejected, read from its files (core/quarantine-file.ts) ----

/** Most entries one /api/quarantine page holds; `limit` defaults to QUARANTINE_DEFAULT_LIMIT. */
export const QUARANTINE_MAX_LIMIT = 1000;
export const QUARANTINE_DEFAULT_LIMIT = 100;

/** `before`: `<ms>` (entries older than it) or the `next` of a previous page, `<ms>:<skip>` (core/quarantine-file.ts). */
const QuarantineCursorSchema = z
  .string()
  .regex(/^\d{1,16}(:\d{1,9})?$/, 'must be a time in ms, or the "next" of a previous page (<ms>:<n>)')
  .transform((text): { at: number; skip?: number } => {
    const [at = '0', skip] = text.split(':');
    return skip === undefined ? { at: Number(at) } : { at: Number(at), skip: Number(skip) };
  })
  .pipe(z.strictObject({ at: z.number().int().max(Number.MAX_SAFE_INTEGER), skip: z.number().int().min(0).optional() }));

export const QuarantineQuerySchema = z.strictObject({
  /** Only entries naming this device (registered or not: DEVICE_UNKNOWN entries name made-up ids). */
  device: DeviceIdSchema.optional(),
  reason: z.enum(REJECT_REASONS).optional(),
  limit: z
    .string()
    .regex(/^\d{1,6}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(1).max(QUARANTINE_MAX_LIMIT))
    .optional(),
  before: QuarantineCursorSchema.optional(),
});
export type QuarantineQuery = z.infer<typeof QuarantineQuerySchema>;

export const QuarantineEntryViewSchema = z.strictObject({
  at: z.number().int(),
  reason: z.enum(REJECT_REASONS),
  /** The reason's text (core/errors.ts). */
  reasonText: z.string(),
  device: z.string().nullable(),
  topic: z.string(),
  /** Why this message, in ingest's words. */
  message: z.string(),
  /** The start of the payload, as text (utf8) or base64: attacker-controlled, show it as text only. */
  payload: z.string(),
  encoding: z.enum(['utf8', 'base64']),
  /** The whole payload's size in bytes. */
  bytes: z.number().int(),
  /** The payload was longer than what was kept. */
  truncated: z.boolean(),
});
export type QuarantineEntryView = z.infer<typeof QuarantineEntryViewSchema>;

export const QuarantineResponseSchema = z.strictObject({
  /** False when the quarantine folder does not exist here (SENSORPIPE_DISPLAY_QUARANTINE_DIR): then no entries. */
  available: z.boolean(),
  /** Newest first. */
  entries: z.array(QuarantineEntryViewSchema),
  /** Pass as `before` for the next, older page; null on the last page. */
  next: z.string().nullable(),
  /** Entries evicted to keep the quarantine bounded (SENSORPIPE_QUARANTINE_MAX), all reasons. */
  evicted: z.number().int(),
});
export type QuarantineResponse = z.infer<typeof QuarantineResponseSchema>;

/** Parses /api/quarantine parameters; throws QUERY_INVALID naming the parameter. */
export function parseQuarantineQuery(params: URLSearchParams, ignore: readonly string[] = []): QuarantineQuery {
  const parsed = QuarantineQuerySchema.safeParse(queryParamsOf(params, ignore));
  if (!parsed.success) throw queryParamError(parsed.error);
  return parsed.data;
}
