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

/**
 * Where the subscription of the current MQTT connection stands: `none` (no connection), `pending` (asked,
 * no SUBACK yet: messages published now would not reach us), `granted` (a SUBACK granting every filter)
 * or `refused` (the broker refused a filter: its SUBACK said 0x80, MQTT 3.1.1 §3.9.3).
 */
export type SubscriptionState = 'none' | 'pending' | 'granted' | 'refused';

const FILTERS = { [topics.allVerified]: { qos: 1 }, [topics.allStatus]: { qos: 1 }, [topics.allCompleteness]: { qos: 1 }, [topics.allCounts]: { qos: 1 } } as const;

export class AlertsFeed {
  readonly client: MqttClient;
  /** Resolves at the first SUBACK that grants every filter. */
  readonly ready: Promise<void>;
  private subscriptionState: SubscriptionState = 'none';
  /** Counts connections begun and ended: an answer that arrives for an earlier one changes nothing. */
  private connection = 0;

  constructor(options: { url: string; clientId: string; password: string | undefined; logger: Logger; metrics: AlertsMetrics; handlers: AlertsFeedHandlers }) {
    this.client = mqtt.connect(options.url, {
      clientId: options.clientId,
      username: ALERTS_USERNAME,
      password: options.password,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      protocolVersion: 4,
      // We subscribe on every connection ourselves (below): MQTT.js's own resubscription would make ours
      // a no-op answered at once, before the broker's SUBACK, and readiness would come too early.
      resubscribe: false,
    });
    this.ready = new Promise((resolve) => {
      this.client.on('connect', () => {
        const connection = ++this.connection;
        this.subscriptionState = 'pending';
        // QoS 1 for the verified feed: a lost reading could be the one that crosses a threshold. Asked
        // again on every connection: the session is clean, so the broker forgot the last one's.
        this.client.subscribe(FILTERS, (err, granted) => {
          if (connection !== this.connection) return; // that connection is gone; 'close' said so
          if (err || granted?.length !== Object.keys(FILTERS).length) {
            this.subscriptionState = 'refused';
            options.logger.error({ err: err?.message ?? 'not every filter answered' }, 'alerts subscription failed');
            return;
          }
          this.subscriptionState = 'granted';
          resolve();
        });
      });
    });
    this.client.on('close', () => {
      this.connection++;
      this.subscriptionState = 'none';
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

  get subscription(): SubscriptionState {
    return this.subscriptionState;
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
