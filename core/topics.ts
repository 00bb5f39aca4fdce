/**
 * Every MQTT topic the product uses is built and parsed here; no topic string literal lives elsewhere.
 *
 *   sensors/{deviceId}/telemetry    device → ingest, signed readings, QoS 1
 *   sensors/{deviceId}/status       retained online/offline (device, its Will, and the broker)
 *   pipeline/readings/{deviceId}    ingest → display, verified readings only
 *   pipeline/completeness/{deviceId} ingest → display, retained: readings received vs missing (seq gaps)
 */
import { DeviceIdSchema } from './schemas.ts';

const SENSORS = 'sensors';
const PIPELINE = 'pipeline';

export type TopicKind = 'telemetry' | 'status' | 'verified' | 'completeness';

export const topics = {
  telemetry: (deviceId: string): string => `${SENSORS}/${deviceId}/telemetry`,
  status: (deviceId: string): string => `${SENSORS}/${deviceId}/status`,
  verified: (deviceId: string): string => `${PIPELINE}/readings/${deviceId}`,
  completeness: (deviceId: string): string => `${PIPELINE}/completeness/${deviceId}`,

  /** Subscription filters for the services. */
  allTelemetry: `${SENSORS}/+/telemetry`,
  allStatus: `${SENSORS}/+/status`,
  allVerified: `${PIPELINE}/readings/+`,
  allCompleteness: `${PIPELINE}/completeness/+`,
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
  if (parts.length !== 3) return undefined;
  const [a, b, c] = parts as [string, string, string];
  let parsed: ParsedTopic | undefined;
  if (a === SENSORS && c === 'telemetry') parsed = { kind: 'telemetry', deviceId: b };
  else if (a === SENSORS && c === 'status') parsed = { kind: 'status', deviceId: b };
  else if (a === PIPELINE && b === 'readings') parsed = { kind: 'verified', deviceId: c };
  else if (a === PIPELINE && b === 'completeness') parsed = { kind: 'completeness', deviceId: c };
  if (parsed === undefined || !DeviceIdSchema.safeParse(parsed.deviceId).success) return undefined;
  return parsed;
}

/** True when the topic or filter contains an MQTT wildcard ([MQTT-4.7.1-1]: not allowed in PUBLISH topics). */
export function hasWildcard(topic: string): boolean {
  return topic.includes('+') || topic.includes('#');
}
