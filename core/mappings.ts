/**
 * Payload mappings: how ingest reads a reading out of what an off-the-shelf device sends, for devices
 * that cannot sign (trust level `broker-authenticated`, core/PROTOCOL.md §7). Chosen per device in the
 * registry; each format comes with the one topic it is read from (core/topics.ts):
 *
 *   flat-json    sensors/{id}/telemetry   {"temperature":21.5,"humidity":40}  (optional "ts", ms)
 *   pointers     sensors/{id}/telemetry   any JSON; metric name → RFC 6901 JSON pointer (optional unit),
 *                                         and optionally a pointer to the time
 *   tasmota      tele/{id}/SENSOR         Tasmota's SENSOR telemetry: {"Time":…,"ENERGY":{"Power":12},…}
 *   shelly-gen2  {id}/events/rpc          Shelly Gen2+ NotifyStatus / NotifyFullStatus notifications
 *
 * Pure functions over a parsed JSON value; every failure is a value with a stable reason code. The
 * mapped values are plain objects whose keys are checked metric names (never `__proto__` and the like).
 */
import { z } from 'zod';
import type { RejectReason } from './errors.ts';
import { LIMITS } from './limits.ts';
import { MetricNameSchema, MetaValueSchema, RESERVED_NAMES, strictRecord } from './schemas.ts';

export const PAYLOAD_FORMATS = ['flat-json', 'pointers', 'tasmota', 'shelly-gen2'] as const;
export type PayloadFormat = (typeof PAYLOAD_FORMATS)[number];

export const MAPPING_LIMITS = {
  /** Characters of a JSON pointer. */
  maxPointerLength: 256,
  /** Reference tokens of a JSON pointer (levels it descends). */
  maxPointerDepth: 16,
  /** Levels a tasmota or shelly-gen2 mapping looks into below a top-level member. */
  maxWalkDepth: 3,
  /** Characters of a unit. */
  maxUnitLength: 16,
} as const;

/**
 * An RFC 6901 JSON pointer that points into the payload: "" (the whole document) is not a value a
 * reading can use, so at least one reference token; `~` only as `~0` or `~1`; no control characters.
 */
export const JsonPointerSchema = z
  .string()
  .min(2)
  .max(MAPPING_LIMITS.maxPointerLength)
  .regex(/^(\/([^~/\p{Cc}]|~[01])*)+$/u, 'a JSON pointer (RFC 6901): "/" then reference tokens separated by "/", "~" only as ~0 or ~1')
  .refine((pointer) => pointer.split('/').length - 1 <= MAPPING_LIMITS.maxPointerDepth, `a JSON pointer of at most ${MAPPING_LIMITS.maxPointerDepth} levels`);

const UnitSchema = MetaValueSchema.max(MAPPING_LIMITS.maxUnitLength);

/** One metric of a pointers mapping: a pointer, or a pointer with the unit of the value. */
export const PointerTargetSchema = z.union([JsonPointerSchema, z.strictObject({ pointer: JsonPointerSchema, unit: UnitSchema.optional() })]);

/** Where a pointers mapping finds the reading's time, and how it is written there. */
export const PointerTimeSchema = z.strictObject({
  pointer: JsonPointerSchema,
  /** `ms` or `s` since the Unix epoch (a number), or an ISO-8601 date-time string with a UTC offset. */
  format: z.enum(['ms', 's', 'iso8601']),
});

/** Metric name → target; a `__proto__` key is refused, not dropped (strictRecord). */
export const PointerMetricsSchema = strictRecord(MetricNameSchema, PointerTargetSchema)
  .refine((metrics) => Object.keys(metrics).length >= 1, 'a pointers mapping names at least one metric')
  .refine((metrics) => Object.keys(metrics).length <= LIMITS.maxMetricsPerReading, `a pointers mapping names at most ${LIMITS.maxMetricsPerReading} metrics`);

export const PayloadMappingSchema = z.discriminatedUnion('format', [
  z.strictObject({ format: z.literal('flat-json') }),
  z.strictObject({ format: z.literal('tasmota') }),
  z.strictObject({ format: z.literal('shelly-gen2') }),
  z.strictObject({ format: z.literal('pointers'), metrics: PointerMetricsSchema, ts: PointerTimeSchema.optional() }),
]);
export type PayloadMapping = z.infer<typeof PayloadMappingSchema>;

/** A mapped reading: its time from the device (undefined when the payload has none) and its values. */
export interface MappedReading {
  ts: number | undefined;
  values: Record<string, number>;
}

export type MapOutcome =
  | { ok: true; reading: MappedReading }
  /** The payload was read, and carries no measurement (a Shelly NotifyEvent, a status of only wifi, …). */
  | { ok: 'nothing'; message: string }
  | { ok: false; code: RejectReason; message: string };

const unmappable = (message: string): MapOutcome => ({ ok: false, code: 'PAYLOAD_UNMAPPABLE', message });
const notNumeric = (message: string): MapOutcome => ({ ok: false, code: 'READING_VALUE_INVALID', message });

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function validMetricName(name: string): boolean {
  return name.length <= LIMITS.metricNameMaxLength && LIMITS.metricNamePattern.test(name) && !RESERVED_NAMES.has(name);
}

/** A metric name made from a path of payload keys: lower-cased, runs of other characters as one `_`. */
export function derivedMetricName(parts: readonly string[]): string {
  const name = parts
    .join('_')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  return /^[a-z]/.test(name) ? name : `m_${name}`;
}

const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** Milliseconds of an ISO-8601 date-time with a UTC offset, or undefined. */
function isoMs(text: string): number | undefined {
  if (!ISO_WITH_OFFSET.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? ms : undefined;
}

/** A time within the protocol's absolute bounds, as an integer of ms, or the reason it is not. */
function boundedTs(ms: number, what: string): MapOutcome | number {
  const ts = Math.round(ms);
  if (!Number.isFinite(ts) || ts < LIMITS.minTimestampMs || ts > LIMITS.maxTimestampMs) {
    return { ok: false, code: 'READING_TS_OUT_OF_RANGE', message: `${what} is outside 2000..2100` };
  }
  return ts;
}

/** Adds one mapped value, refusing a name that is not a metric name, a name given twice, and too many. */
class ValueCollector {
  readonly values: Record<string, number> = {};
  count = 0;
  problem: MapOutcome | undefined;

  add(name: string, value: number, from: string): void {
    if (this.problem !== undefined) return;
    if (!validMetricName(name)) {
      this.problem = unmappable(`${from} would be metric "${name.slice(0, 40)}", which is not a valid metric name (${LIMITS.metricNamePattern.source}); map it with a pointers mapping`);
      return;
    }
    if (Object.hasOwn(this.values, name)) {
      this.problem = unmappable(`two members of the payload map to metric "${name}"`);
      return;
    }
    if (!Number.isFinite(value)) {
      this.problem = notNumeric(`${from} is not a finite number`);
      return;
    }
    if (++this.count > LIMITS.maxMetricsPerReading) {
      this.problem = unmappable(`more than ${LIMITS.maxMetricsPerReading} metrics in one payload; pick the ones to keep with a pointers mapping`);
      return;
    }
    this.values[name] = value;
  }
}

// ---- flat JSON -------------------------------------------------------------------------------------------

/**
 * `{"temperature":21.5,"humidity":40}`: every member a metric with a finite number, except `ts`
 * (optional: integer ms since the epoch) and `device` (checked by the caller against the topic).
 */
function mapFlatJson(json: unknown): MapOutcome {
  if (!isPlainObject(json)) return unmappable('a flat-json payload is a JSON object of metric: number');
  const collector = new ValueCollector();
  let ts: number | undefined;
  for (const key of Object.keys(json)) {
    const value = json[key];
    if (key === 'device') continue;
    if (key === 'ts') {
      if (typeof value !== 'number' || !Number.isInteger(value)) return unmappable('"ts" must be an integer of milliseconds since the Unix epoch');
      const bounded = boundedTs(value, '"ts"');
      if (typeof bounded !== 'number') return bounded;
      ts = bounded;
      continue;
    }
    if (!validMetricName(key)) return unmappable(`member "${key.slice(0, 40)}" is not a metric name (${LIMITS.metricNamePattern.source})`);
    if (typeof value !== 'number') return notNumeric(`"${key}" is ${value === null ? 'null' : typeof value}, not a number`);
    collector.add(key, value, `"${key}"`);
    if (collector.problem !== undefined) return collector.problem;
  }
  if (collector.count === 0) return unmappable('no metric in the payload');
  return { ok: true, reading: { ts, values: collector.values } };
}

// ---- JSON pointers ---------------------------------------------------------------------------------------

/** The value a JSON pointer (already validated) points to, or undefined; own members only. */
export function resolvePointer(document: unknown, pointer: string): unknown {
  let current: unknown = document;
  for (const raw of pointer.slice(1).split('/')) {
    const token = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(current)) {
      if (!/^(0|[1-9][0-9]{0,8})$/.test(token)) return undefined;
      current = current[Number(token)];
    } else if (isPlainObject(current)) {
      // Own members only: "/constructor" or "/__proto__/x" never reaches Object.prototype.
      if (!Object.hasOwn(current, token)) return undefined;
      current = current[token];
    } else {
      return undefined;
    }
    if (current === undefined) return undefined;
  }
  return current;
}

function mapPointers(json: unknown, mapping: Extract<PayloadMapping, { format: 'pointers' }>): MapOutcome {
  const collector = new ValueCollector();
  for (const [metric, target] of Object.entries(mapping.metrics)) {
    const pointer = typeof target === 'string' ? target : target.pointer;
    const value = resolvePointer(json, pointer);
    // A device may leave a member out of some messages (Tasmota's ENERGY, a sensor not read yet).
    if (value === undefined) continue;
    if (typeof value !== 'number') return notNumeric(`${pointer} (metric ${metric}) is ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}, not a number`);
    collector.add(metric, value, pointer);
    if (collector.problem !== undefined) return collector.problem;
  }
  if (collector.count === 0) return unmappable('none of the mapping\'s pointers finds a value in the payload');
  let ts: number | undefined;
  if (mapping.ts !== undefined) {
    const raw = resolvePointer(json, mapping.ts.pointer);
    if (raw === undefined) return unmappable(`the time pointer ${mapping.ts.pointer} finds nothing`);
    let ms: number | undefined;
    if (mapping.ts.format === 'iso8601') ms = typeof raw === 'string' ? isoMs(raw) : undefined;
    else if (typeof raw === 'number' && Number.isFinite(raw)) ms = mapping.ts.format === 's' ? raw * 1000 : raw;
    if (ms === undefined) return unmappable(`the time at ${mapping.ts.pointer} is not ${mapping.ts.format === 'iso8601' ? 'an ISO-8601 date-time with a UTC offset' : `a number of ${mapping.ts.format}`}`);
    const bounded = boundedTs(ms, `the time at ${mapping.ts.pointer}`);
    if (typeof bounded !== 'number') return bounded;
    ts = bounded;
  }
  return { ok: true, reading: { ts, values: collector.values } };
}

// ---- Tasmota ---------------------------------------------------------------------------------------------

/**
 * Numbers below `value` become metrics named by their path; arrays of numbers (Tasmota's per-channel
 * `"Power":[10,20]`) by their position from 1. Strings, booleans and null are not measurements here
 * (Tasmota's "TotalStartTime", "TempUnit"; Shelly's "output") and are left out.
 */
function walkNumbers(value: unknown, path: string[], depth: number, collector: ValueCollector, skip: (key: string) => boolean): void {
  if (collector.problem !== undefined) return;
  if (typeof value === 'number') {
    collector.add(derivedMetricName(path), value, `/${path.join('/')}`);
    return;
  }
  if (depth >= MAPPING_LIMITS.maxWalkDepth) return;
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      if (typeof item === 'number') walkNumbers(item, [...path, String(i + 1)], depth + 1, collector, skip);
    });
    return;
  }
  if (!isPlainObject(value)) return;
  for (const key of Object.keys(value)) if (!skip(key)) walkNumbers(value[key], [...path, key], depth + 1, collector, skip);
}

/**
 * Tasmota's `tele/<topic>/SENSOR`: `{"Time":"2026-12-06T10:00:00+01:00","ENERGY":{"Power":12},
 * "AM2301":{"Temperature":21.5}}` → energy_power, am2301_temperature. `Time` is local time; only a
 * time with a UTC offset (Tasmota `SetOption52 1`) says which instant it is, so one without is refused.
 */
function mapTasmota(json: unknown): MapOutcome {
  if (!isPlainObject(json)) return unmappable('a Tasmota SENSOR payload is a JSON object');
  let ts: number | undefined;
  if (json.Time !== undefined) {
    const ms = typeof json.Time === 'string' ? isoMs(json.Time) : undefined;
    if (ms === undefined) return unmappable('Tasmota "Time" has no UTC offset: run "SetOption52 1" on the device so that it says which instant it means');
    const bounded = boundedTs(ms, '"Time"');
    if (typeof bounded !== 'number') return bounded;
    ts = bounded;
  }
  const collector = new ValueCollector();
  for (const key of Object.keys(json)) {
    if (key === 'Time' || key === 'device') continue;
    walkNumbers(json[key], [key], 0, collector, () => false);
  }
  if (collector.problem !== undefined) return collector.problem;
  if (collector.count === 0) return unmappable('no number in the Tasmota SENSOR payload');
  return { ok: true, reading: { ts, values: collector.values } };
}

// ---- Shelly Gen2 -----------------------------------------------------------------------------------------

/** Shelly Gen2 components that measure something; the rest (sys, wifi, cloud, mqtt, ble, …) are not readings. */
const SHELLY_MEASURING = new Set(['switch', 'cover', 'light', 'rgb', 'rgbw', 'pm1', 'em', 'em1', 'emdata', 'em1data', 'temperature', 'humidity', 'devicepower', 'voltmeter', 'illuminance', 'pressure', 'smoke', 'flood']);
const SHELLY_COMPONENT = /^([a-z0-9]+):(\d{1,3})$/;
/** Members of a component that are not measurements: its id, and minute counters and their times. */
const shellySkip = (key: string): boolean => key === 'id' || key === 'by_minute' || key === 'minute_ts' || key.endsWith('_ts');

/**
 * A Shelly Gen2+ notification on `<prefix>/events/rpc` (the prefix set to the device id):
 * `{"method":"NotifyStatus","params":{"ts":1765015200.12,"switch:0":{"apower":12.3},"temperature:0":{"tC":21.5}}}`
 * → switch_0_apower, temperature_0_tc; the time is `params.ts` (seconds).
 */
function mapShellyGen2(json: unknown): MapOutcome {
  if (!isPlainObject(json)) return unmappable('a Shelly notification is a JSON object');
  const method = json.method;
  if (method === 'NotifyEvent') return { ok: 'nothing', message: 'a Shelly NotifyEvent (a button, a restart): no measurement' };
  if (method !== 'NotifyStatus' && method !== 'NotifyFullStatus') return unmappable(`not a Shelly NotifyStatus or NotifyFullStatus notification (method ${JSON.stringify(method)?.slice(0, 40)})`);
  const params = json.params;
  if (!isPlainObject(params)) return unmappable('the notification has no "params" object');
  let ts: number | undefined;
  if (params.ts !== undefined) {
    if (typeof params.ts !== 'number') return unmappable('"params.ts" is not a number of seconds');
    const bounded = boundedTs(params.ts * 1000, '"params.ts"');
    if (typeof bounded !== 'number') return bounded;
    ts = bounded;
  }
  const collector = new ValueCollector();
  for (const key of Object.keys(params)) {
    const component = SHELLY_COMPONENT.exec(key);
    if (component === null || !SHELLY_MEASURING.has(component[1]!)) continue;
    const value = params[key];
    if (!isPlainObject(value)) continue;
    for (const field of Object.keys(value)) if (!shellySkip(field)) walkNumbers(value[field], [component[1]!, component[2]!, field], 1, collector, shellySkip);
  }
  if (collector.problem !== undefined) return collector.problem;
  if (collector.count === 0) return { ok: 'nothing', message: 'a Shelly status notification of components that measure nothing (sys, wifi, …)' };
  return { ok: true, reading: { ts, values: collector.values } };
}

// ---- the one entry point ---------------------------------------------------------------------------------

/** Reads one reading out of a parsed payload with the device's mapping. */
export function mapPayload(json: unknown, mapping: PayloadMapping): MapOutcome {
  switch (mapping.format) {
    case 'flat-json':
      return mapFlatJson(json);
    case 'pointers':
      return mapPointers(json, mapping);
    case 'tasmota':
      return mapTasmota(json);
    case 'shelly-gen2':
      return mapShellyGen2(json);
  }
}

/** The units a pointers mapping gives its metrics (for the dashboard), or undefined. */
export function unitsOf(mapping: PayloadMapping | undefined): Record<string, string> | undefined {
  if (mapping?.format !== 'pointers') return undefined;
  let units: Record<string, string> | undefined;
  for (const [metric, target] of Object.entries(mapping.metrics)) if (typeof target !== 'string' && target.unit !== undefined) (units ??= {})[metric] = target.unit;
  return units;
}
