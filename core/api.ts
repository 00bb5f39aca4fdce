/**
 * The display's HTTP API: the query parameters it accepts and the JSON it answers, one zod schema each
 * (the history parameters live in ./query.ts, shared with the store). Errors are always
 * `{"code": "...", "message": "..."}` with the HTTP status of the code (core/errors.ts).
 *
 *   GET /api/devices?status=online&site=Plant%203&profile=env&q=boiler
 *   GET /api/devices/{id}/readings?metrics=temperature&from=-1h&to=now&fn=mean&every=1m&format=csv
 *   GET /healthz
 */
import { z } from 'zod';
import { queryParamError, queryParamsOf } from './query.ts';
import { PAYLOAD_FORMATS } from './mappings.ts';
import { DeviceIdSchema, DeviceMetaSchema, DeviceStateSchema, MetaValueSchema, ReadingTrustSchema, strictRecord } from './schemas.ts';

export const DevicesQuerySchema = z.strictObject({
  status: z.enum(['online', 'offline', 'revoked']).optional(),
  site: MetaValueSchema.optional(),
  profile: MetaValueSchema.optional(),
  /** Text search over id, site and model (case-insensitive substring). */
  q: z.string().max(64).optional(),
});
export type DevicesQuery = z.infer<typeof DevicesQuerySchema>;

export const DeviceSummarySchema = z.strictObject({
  id: DeviceIdSchema,
  registered: z.enum(['active', 'revoked']),
  /**
   * How its readings are authenticated (core/PROTOCOL.md §7): `signed` (every message signed with the
   * device's key), or `broker` (a broker-authenticated device: only its MQTT login; unsigned payloads).
   */
  trust: ReadingTrustSchema,
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
