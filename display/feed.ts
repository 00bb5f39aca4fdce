/**
 * The display's MQTT connection (service account svc:display, read-only): verified readings from
 * ingest, device status from the broker and devices, completeness and per-device counts from ingest,
 * alert states from the alerts component. Every payload is parsed with its core/ schema and decoded as
 * ingest decodes telemetry (core/decode.ts: strict UTF-8, and every member kept); a malformed one is
 * counted and dropped, never passed on (alert states are handed to display/alerts.ts, which does the
 * same and also reads an empty payload as "cleared"). Status comes from the devices themselves: it is
 * outside input like any other.
 */
import mqtt, { type ISubscriptionMap, type MqttClient } from 'mqtt';
import type { ZodType } from 'zod';
import { AlertStateMessageSchema } from '../core/alerts.ts';
import { decodeMessage } from '../core/decode.ts';
import type { Logger } from '../core/logger.ts';
import { CompletenessMessageSchema, DeviceCountsMessageSchema, StatusMessageSchema, VerifiedReadingsSchema, type CompletenessMessage, type DeviceCountsMessage, type StatusMessage, type VerifiedReadings } from '../core/schemas.ts';
import { parseTopic, topics, type TopicKind } from '../core/topics.ts';
import type { DisplayMetrics } from './metrics.ts';

export const DISPLAY_USERNAME = 'svc:display';
/** Bigger than any verified-readings message ingest publishes (a 1,000-reading batch with metadata). */
const MAX_FEED_PAYLOAD_BYTES = 4 * 1024 * 1024;

export interface FeedHandlers {
  readings(message: VerifiedReadings): void;
  status(message: StatusMessage): void;
  completeness(message: CompletenessMessage): void;
  counts(message: DeviceCountsMessage): void;
  /** alerts/{device}, handed over undecoded: an empty payload means something there (display/alerts.ts). */
  alerts(device: string, payload: Buffer): void;
}

export interface FeedOptions {
  url: string;
  password: string | undefined;
  logger: Logger;
  metrics: DisplayMetrics;
  handlers: FeedHandlers;
}

const SCHEMAS: Partial<Record<TopicKind, ZodType>> = {
  verified: VerifiedReadingsSchema,
  status: StatusMessageSchema,
  completeness: CompletenessMessageSchema,
  counts: DeviceCountsMessageSchema,
  alerts: AlertStateMessageSchema,
};

export class PipelineFeed {
  readonly client: MqttClient;
  /** Resolves once the first subscription is in place (retained status and completeness follow it). */
  readonly ready: Promise<void>;

  constructor(private readonly options: FeedOptions) {
    this.client = mqtt.connect(options.url, {
      clientId: `sensorpipe-display-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
      username: DISPLAY_USERNAME,
      password: options.password,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      protocolVersion: 4,
    });
    this.ready = new Promise((resolve) => {
      this.client.on('connect', () => {
        // The live feed at QoS 0: a lost live frame is in the store anyway, and QoS 0 spares ingest and
        // the broker a PUBACK per message. Status, completeness and alert states are retained, at QoS 1.
        this.client.subscribe({ [topics.allVerified]: { qos: 0 }, [topics.allStatus]: { qos: 1 }, [topics.allCompleteness]: { qos: 1 }, [topics.allCounts]: { qos: 1 }, [topics.allAlerts]: { qos: 1 } }, (err) => {
          if (err) options.logger.error({ err: err.message }, 'display subscription failed');
          else resolve();
        });
      });
    });
    this.client.on('error', (err) => options.logger.warn({ err: err.message }, 'display MQTT error'));
    this.client.on('message', (topic, payload) => this.receive(topic, payload));
  }

  /**
   * Asks the broker for every retained alert state again: a SUBSCRIBE identical to an existing one
   * replaces it, and the retained messages matching it are sent again [MQTT-3.8.4-3]. For states the
   * display refused while their device was not yet in its registry.
   */
  replayAlerts(): void {
    // `resubscribe`: MQTT.js would otherwise leave out a filter it holds already, and send nothing.
    const filters: ISubscriptionMap = { [topics.allAlerts]: { qos: 1 } };
    filters.resubscribe = true;
    this.client.subscribe(filters, (err) => {
      if (err) this.options.logger.warn({ err: err.message }, 'alert states not asked for again');
    });
  }

  get connected(): boolean {
    return this.client.connected;
  }

  private receive(topic: string, payload: Buffer): void {
    const { metrics, handlers } = this.options;
    const parsed = parseTopic(topic);
    const schema = parsed === undefined ? undefined : SCHEMAS[parsed.kind];
    if (parsed === undefined || schema === undefined) {
      metrics.feedInvalid.inc({ kind: 'topic' });
      return;
    }
    metrics.feedMessages.inc({ kind: parsed.kind });
    if (parsed.kind === 'alerts') {
      handlers.alerts(parsed.deviceId, payload);
      return;
    }
    if (payload.length === 0) return; // a cleared retained message
    // As ingest decodes telemetry: a member the message would not hold (a key given twice, a __proto__
    // that zod would drop from a record of values) makes it invalid, never silently a different message.
    const decoded = decodeMessage(payload, schema, MAX_FEED_PAYLOAD_BYTES);
    const message = decoded.ok ? (decoded.value as { device: string }) : undefined;
    if (message === undefined || message.device !== parsed.deviceId) {
      metrics.feedInvalid.inc({ kind: parsed.kind });
      return;
    }
    if (parsed.kind === 'verified') handlers.readings(message as VerifiedReadings);
    else if (parsed.kind === 'status') handlers.status(message as StatusMessage);
    else if (parsed.kind === 'counts') handlers.counts(message as DeviceCountsMessage);
    else handlers.completeness(message as CompletenessMessage);
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
