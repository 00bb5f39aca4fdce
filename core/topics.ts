/**
 * Every MQTT topic the product uses is built and parsed here; no topic string literal lives elsewhere.
 *
 *   sensors/{deviceId}/telemetry    device → ingest, signed readings, QoS 1
 *   sensors/{deviceId}/status       retained online/offline (device, its Will, and the broker)
 *   pipeline/readings/{deviceId}    ingest → display, verified readings only
 *   pipeline/completeness/{deviceId} ingest → display, retained: readings received vs missing (seq gaps)
 *   pipeline/counts/{deviceId}      ingest → display, alerts, retained: accepted, duplicates, rejected by reason
 *   alerts/{deviceId}               alerts → display, retained: the device's rules, their state, recent changes
 *
 * Topics of off-the-shelf devices (broker-authenticated, read with a payload mapping: core/mappings.ts),
 * each the device's own, fenced to it by the broker (broker/acl.ts):
 *   tele/{deviceId}/SENSOR          Tasmota telemetry (Tasmota's Topic = the device id)
 *   {deviceId}/events/rpc           Shelly Gen2 notifications (the Shelly's MQTT prefix = the device id)
 */
import { DeviceIdSchema } from './schemas.ts';

const SENSORS = 'sensors';
const PIPELINE = 'pipeline';
const TASMOTA_TELE = 'tele';
const ALERTS = 'alerts';

export type TopicKind = 'telemetry' | 'status' | 'verified' | 'completeness' | 'counts' | 'alerts' | 'tasmota' | 'shelly';

/**
 * First topic levels that are ours or Tasmota's: a device whose own topic tree starts at its id (a
 * Shelly, `{id}/…`) must not have one of these as its id, or its tree would hold other devices' topics.
 */
export const RESERVED_TOPIC_ROOTS: ReadonlySet<string> = new Set([SENSORS, PIPELINE, ALERTS, TASMOTA_TELE, 'stat', 'cmnd', 'tasmota', 'shellies', 'homeassistant']);

export const topics = {
  telemetry: (deviceId: string): string => `${SENSORS}/${deviceId}/telemetry`,
  status: (deviceId: string): string => `${SENSORS}/${deviceId}/status`,
  verified: (deviceId: string): string => `${PIPELINE}/readings/${deviceId}`,
  completeness: (deviceId: string): string => `${PIPELINE}/completeness/${deviceId}`,
  counts: (deviceId: string): string => `${PIPELINE}/counts/${deviceId}`,
  alerts: (deviceId: string): string => `${ALERTS}/${deviceId}`,
  /** Tasmota's telemetry with FullTopic `%prefix%/%topic%/` and Topic = the device id. */
  tasmotaSensor: (deviceId: string): string => `${TASMOTA_TELE}/${deviceId}/SENSOR`,
  /** Shelly Gen2 notifications with the MQTT topic prefix = the device id. */
  shellyEvents: (deviceId: string): string => `${deviceId}/events/rpc`,

  /** Subscription filters for the services. */
  allTelemetry: `${SENSORS}/+/telemetry`,
  allStatus: `${SENSORS}/+/status`,
  allVerified: `${PIPELINE}/readings/+`,
  allCompleteness: `${PIPELINE}/completeness/+`,
  allCounts: `${PIPELINE}/counts/+`,
  allAlerts: `${ALERTS}/+`,
  /** Everything the alerts component may publish under. */
  alertsTree: `${ALERTS}/#`,
  allTasmotaSensor: `${TASMOTA_TELE}/+/SENSOR`,
  allShellyEvents: '+/events/rpc',
  /** Everything ingest reads: signed telemetry, and the topics of the payload mappings. */
  ingestFilters: [`${SENSORS}/+/telemetry`, `${TASMOTA_TELE}/+/SENSOR`, '+/events/rpc'] as readonly string[],
  /** Everything ingest may publish under. */
  pipelineTree: `${PIPELINE}/#`,

  /** MQTT 5 shared subscription: several ingest processes split the telemetry between them. */
  shared: (group: string, filter: string): string => `$share/${group}/${filter}`,
} as const;

export interface ParsedTopic {
  kind: TopicKind;
  deviceId: string;
}

/** Parses a concrete (wildcard-free) topic; returns undefined for anything not ours or malformed. */
export function parseTopic(topic: string): ParsedTopic | undefined {
  const parts = topic.split('/');
  if (parts.length === 2 && parts[0] === ALERTS) {
    const deviceId = parts[1] as string;
    return DeviceIdSchema.safeParse(deviceId).success ? { kind: 'alerts', deviceId } : undefined;
  }
  if (parts.length !== 3) return undefined;
  const [a, b, c] = parts as [string, string, string];
  let parsed: ParsedTopic | undefined;
  if (a === SENSORS && c === 'telemetry') parsed = { kind: 'telemetry', deviceId: b };
  else if (a === SENSORS && c === 'status') parsed = { kind: 'status', deviceId: b };
  else if (a === PIPELINE && b === 'readings') parsed = { kind: 'verified', deviceId: c };
  else if (a === PIPELINE && b === 'completeness') parsed = { kind: 'completeness', deviceId: c };
  else if (a === PIPELINE && b === 'counts') parsed = { kind: 'counts', deviceId: c };
  else if (a === TASMOTA_TELE && c === 'SENSOR') parsed = { kind: 'tasmota', deviceId: b };
  else if (b === 'events' && c === 'rpc' && !RESERVED_TOPIC_ROOTS.has(a)) parsed = { kind: 'shelly', deviceId: a };
  if (parsed === undefined || !DeviceIdSchema.safeParse(parsed.deviceId).success) return undefined;
  return parsed;
}

/** True when the topic or filter contains an MQTT wildcard ([MQTT-4.7.1-1]: not allowed in PUBLISH topics). */
export function hasWildcard(topic: string): boolean {
  return topic.includes('+') || topic.includes('#');
}
