/**
 * The alerts component's MQTT connection (service account svc:alerts): reads the verified feed, device
 * status, completeness and ingest's per-device counts; publishes the retained `alerts/{device}` state.
 * Every payload is outside input: decoded with its core/ schema as the display does (core/decode.ts),
 * counted and dropped when malformed or about another device than its topic's.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { ZodType } from 'zod';
import { decodeMessage } from '../core/decode.ts';
import type { Logger } from '../core/logger.ts';
import {
  CompletenessMessageSchema,
  DeviceCountsMessageSchema,
  StatusMessageSchema,
  VerifiedReadingsSchema,
  type CompletenessMessage,
  type DeviceCountsMessage,
  type StatusMessage,
  type VerifiedReadings,
} from '../core/schemas.ts';
import { parseTopic, topics, type TopicKind } from '../core/topics.ts';
import type { AlertsMetrics } from './metrics.ts';

export const ALERTS_USERNAME = 'svc:alerts';
/** Bigger than any verified-readings message ingest publishes (a 1,000-reading batch with metadata). */
const MAX_FEED_PAYLOAD_BYTES = 4 * 1024 * 1024;

export interface AlertsFeedHandlers {
  readings(message: VerifiedReadings): void;
  status(message: StatusMessage): void;
  completeness(message: CompletenessMessage): void;
  counts(message: DeviceCountsMessage): void;
}

const SCHEMAS: Partial<Record<TopicKind, ZodType>> = {
  verified: VerifiedReadingsSchema,
  status: StatusMessageSchema,
  completeness: CompletenessMessageSchema,
  counts: DeviceCountsMessageSchema,
};

export class AlertsFeed {
  readonly client: MqttClient;
  readonly ready: Promise<void>;

  constructor(options: { url: string; clientId: string; password: string | undefined; logger: Logger; metrics: AlertsMetrics; handlers: AlertsFeedHandlers }) {
    this.client = mqtt.connect(options.url, {
      clientId: options.clientId,
      username: ALERTS_USERNAME,
      password: options.password,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      protocolVersion: 4,
    });
    this.ready = new Promise((resolve) => {
      this.client.on('connect', () => {
        // QoS 1 for the verified feed: a lost reading could be the one that crosses a threshold.
        const filters = { [topics.allVerified]: { qos: 1 }, [topics.allStatus]: { qos: 1 }, [topics.allCompleteness]: { qos: 1 }, [topics.allCounts]: { qos: 1 } } as const;
        this.client.subscribe(filters, (err) => {
          if (err) options.logger.error({ err: err.message }, 'alerts subscription failed');
          else resolve();
        });
      });
    });
    this.client.on('error', (err) => options.logger.warn({ err: err.message }, 'alerts MQTT error'));
    this.client.on('message', (topic, payload) => {
      const parsed = parseTopic(topic);
      const schema = parsed === undefined ? undefined : SCHEMAS[parsed.kind];
      if (parsed === undefined || schema === undefined) {
        options.metrics.feedInvalid.inc({ kind: 'topic' });
        return;
      }
      options.metrics.feedMessages.inc({ kind: parsed.kind });
      if (payload.length === 0) return; // a cleared retained message
      const decoded = decodeMessage(payload, schema, MAX_FEED_PAYLOAD_BYTES);
      const message = decoded.ok ? (decoded.value as { device: string }) : undefined;
      if (message === undefined || message.device !== parsed.deviceId) {
        options.metrics.feedInvalid.inc({ kind: parsed.kind });
        return;
      }
      const { handlers } = options;
      if (parsed.kind === 'verified') handlers.readings(message as VerifiedReadings);
      else if (parsed.kind === 'status') handlers.status(message as StatusMessage);
      else if (parsed.kind === 'completeness') handlers.completeness(message as CompletenessMessage);
      else handlers.counts(message as DeviceCountsMessage);
    });
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** Retained, QoS 1: a display (re)starting anywhere gets every device's alert state. */
  publishState(device: string, payload: string): Promise<void> {
    return this.client.publishAsync(topics.alerts(device), payload, { qos: 1, retain: true }).then(() => undefined);
  }

  async close(): Promise<void> {
    // Forced: a graceful end waits for every queued QoS 1 publish to be acknowledged, which never comes
    // when the broker is unreachable (or still being connected to). Nothing is lost by not waiting: every
    // device's state is published again at the next connection.
    await this.client.endAsync(true);
  }
}
