/**
 * One simulated smart sensor: its own MQTT connection and credentials, a reading every interval (with
 * jitter), each signed as core/PROTOCOL.md says, with a persistent seq; a retained online status and
 * an offline Last Will; reconnects with exponential backoff and jitter; buffers readings while offline
 * (bounded, oldest dropped and counted) and sends them as batches with their original timestamps.
 * This is the healthy device; its faults (faults.ts) are a layer around its send and publish that makes
 * it misbehave on purpose, and counts every bad message.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from '../core/logger.ts';
import { LIMITS } from '../core/limits.ts';
import type { DeviceCredentials } from '../core/registry.ts';
import { PROTOCOL_VERSION, type Reading, type StatusMessage } from '../core/schemas.ts';
import { signTelemetry, type SignKey } from '../core/signature.ts';
import { topics } from '../core/topics.ts';
import { DeviceFaults, type FaultMessages, type FaultName, type Publish } from './faults.ts';
import type { SeqBook } from './seq-book.ts';
import { prng, SignalGenerator, type ProfileName } from './signals.ts';

export interface SimDeviceOptions {
  credentials: DeviceCredentials;
  profile: ProfileName;
  seed: number;
  intervalMs: number;
  faults: FaultName[];
  url: string;
  seqs: SeqBook;
  bufferLimit: number;
  /** Readings per message when sending a buffer. */
  maxBatch: number;
  /**
   * Keep the seq and ts of every acknowledged reading in the summary's `ackedReadings` (default true).
   * Tests compare them with what arrived; a long run (`sensorpipe start` runs for days) turns it off, or
   * the list grows by one entry per reading for ever. `acked` and `ackedSeqRange` are kept either way.
   */
  recordAckedReadings?: boolean;
  /** Keep the seqs of deliberately bad messages in `faultMessages[…].seqs` (default true); counts are kept either way. */
  recordFaultSeqs?: boolean;
  /** Another device's id, for the foreign-topic fault. */
  neighbour: string;
  /** Called with the good readings of each message the broker acknowledged (e.g. to log them to disk). */
  onAcknowledged?: (device: string, readings: readonly Reading[]) => void;
  logger: Logger;
}

export interface DeviceSummary {
  id: string;
  profile: ProfileName;
  faults: FaultName[];
  /** Good readings: sent, acknowledged by the broker (seq and ts of each), still buffered, dropped. */
  sent: number;
  acked: number;
  /** Seq and ts of each acknowledged reading; empty when the device was made with recordAckedReadings: false. */
  ackedReadings: [seq: number, ts: number][];
  /** Lowest and highest acknowledged seq (null before the first): kept in two numbers, whatever is recorded. */
  ackedSeqRange: [low: number, high: number] | null;
  buffered: number;
  droppedFromBuffer: number;
  /** Readings never sent on purpose (dropout): their seqs are gaps. */
  skipped: number;
  /** Bad messages sent on purpose, by fault, with the seqs they carried (if any, and if recordFaultSeqs). */
  faultMessages: FaultMessages;
  connects: number;
}

/** What the healthy device counts itself; the faults layer counts the rest. */
type HealthyCounts = Omit<DeviceSummary, 'skipped' | 'faultMessages'>;

export class SimDevice {
  readonly id: string;
  private client: MqttClient | undefined;
  private readonly signals: SignalGenerator;
  private readonly random: () => number;
  private readonly key: SignKey;
  private readonly logger: Logger;
  private readonly faults: DeviceFaults;
  /** A reading on its way out: published now, or buffered until the connection is back (through the faults, if any). */
  private readonly send: (reading: Reading) => void;
  /** Every QoS 1 message of the device goes out here (through the faults, if any). */
  private readonly publish: Publish;
  private buffer: Reading[] = [];
  private timer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempts = 0;
  private stopped = false;
  /** QoS 1 messages handed to MQTT.js whose callback has not come yet, and who waits for there to be none. */
  private inFlight = 0;
  private onNothingInFlight: (() => void) | undefined;
  private readonly summary: HealthyCounts;

  constructor(private readonly options: SimDeviceOptions) {
    this.id = options.credentials.deviceId;
    this.signals = new SignalGenerator(options.profile, options.seed);
    this.random = prng(options.seed ^ 0x9e3779b9);
    const signing = options.credentials.signing;
    this.key = signing.alg === 'hmac-sha256' ? { alg: 'hmac-sha256', key: Buffer.from(signing.key, 'base64') } : { alg: 'ed25519', privateKey: Buffer.from(signing.privateKey, 'base64') };
    this.logger = options.logger.child({ device: this.id });
    this.summary = { id: this.id, profile: options.profile, faults: options.faults, sent: 0, acked: 0, ackedReadings: [], ackedSeqRange: null, buffered: 0, droppedFromBuffer: 0, connects: 0 };
    const publish: Publish = (topic, payload, publishOptions, onAcknowledged) => this.publishQos1(topic, payload, publishOptions, onAcknowledged);
    this.faults = new DeviceFaults(
      options.faults,
      {
        id: this.id,
        neighbour: options.neighbour,
        key: this.key,
        isConnected: () => this.connected,
        acknowledgedReadings: () => this.summary.acked,
        publish,
        publishAtMostOnce: (topic, payload) => this.client!.publish(topic, payload, { qos: 0 }),
        dropConnection: () => this.client!.stream.destroy(),
        onlineStatus: () => this.status('online', 'connected'),
      },
      options.recordFaultSeqs !== false,
    );
    this.publish = this.faults.wrapPublish(publish);
    this.send = this.faults.wrapSend((reading) => this.sendReading(reading));
  }

  start(): void {
    this.connect();
    // Devices in a fleet do not all wake at once: a random first delay spreads them over one interval.
    this.timer = setTimeout(() => this.loop(), this.random() * this.options.intervalMs);
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  get bufferedCount(): number {
    return this.buffer.length;
  }

  report(): DeviceSummary {
    const { skipped, faultMessages } = this.faults.report();
    const { connects, ...counts } = this.summary;
    // In DeviceSummary's order, which is the order of `sensorpipe sim`'s JSON summary.
    return { ...counts, buffered: this.buffer.length, skipped, faultMessages, connects };
  }

  /**
   * Stops taking readings. With `graceful`, publishes the offline status and waits for every message in
   * flight to be acknowledged before it disconnects — but only while the connection lasts. A stopped
   * device never reconnects, so once its connection is gone (the broker closed it, the network dropped,
   * a reconnect was pending) those PUBACKs cannot come: the client is closed at once and what was still
   * in flight is abandoned, not counted as acknowledged. (MQTT.js's own graceful `end()` waits for an
   * empty outgoing queue with no such limit: it never returned for a device the broker had disconnected.)
   */
  async stop(graceful = true): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    if (!client) return;
    if (graceful && client.connected) {
      this.publish(topics.status(this.id), JSON.stringify(this.status('offline', 'clean')), { retain: true });
      if (await this.allAcknowledged(client)) {
        // Nothing is in flight, so MQTT.js sends DISCONNECT straight away.
        await client.endAsync(false).catch(() => {});
        return;
      }
    }
    // Forced, with reconnectPeriod 0 and a clean session, MQTT.js fails the callbacks still pending.
    await client.endAsync(true).catch(() => {});
  }

  /** True once nothing is in flight; false if the connection closes first. */
  private allAcknowledged(client: MqttClient): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(client.connected);
    return new Promise((resolve) => {
      const settle = (acknowledged: boolean) => {
        this.onNothingInFlight = undefined;
        client.off('close', onClose);
        resolve(acknowledged);
      };
      const onClose = () => settle(false);
      this.onNothingInFlight = () => settle(true);
      client.on('close', onClose);
    });
  }

  /** Every QoS 1 publish goes through here, so that a graceful stop knows when all are acknowledged. */
  private publishQos1(topic: string, payload: string, options: { retain?: boolean }, onAcknowledged?: () => void): void {
    this.inFlight++;
    // MQTT.js keeps a QoS 1 message in its outgoing store until its PUBACK, and resends what is stored
    // once reconnected (the reconnect in connect() keeps the store): at-least-once across a dropped
    // connection, even with a clean session, where the spec would not require it.
    this.client!.publish(topic, payload, { qos: 1, ...options }, (err) => {
      this.inFlight--;
      if (!err) onAcknowledged?.();
      if (this.inFlight === 0) this.onNothingInFlight?.();
    });
  }

  private status(state: 'online' | 'offline', reason: StatusMessage['reason']): StatusMessage {
    return { v: PROTOCOL_VERSION, device: this.id, state, since: Date.now(), reason };
  }

  private connect(): void {
    const client = mqtt.connect(this.options.url, {
      clientId: this.id,
      username: this.id,
      password: this.options.credentials.mqttPassword,
      clean: true,
      reconnectPeriod: 0, // our own backoff with jitter, below
      connectTimeout: 10_000,
      keepalive: 30,
      will: { topic: topics.status(this.id), payload: Buffer.from(JSON.stringify(this.status('offline', 'will'))), qos: 1, retain: true },
    });
    this.client = client;
    client.on('connect', () => {
      this.attempts = 0;
      this.summary.connects++;
      this.publish(topics.status(this.id), JSON.stringify(this.status('online', 'connected')), { retain: true });
      this.sendBuffer();
    });
    client.on('error', (err) => this.logger.debug({ err: err.message }, 'mqtt error'));
    client.on('close', () => {
      if (this.stopped || this.reconnectTimer) return;
      const delay = Math.min(30_000, 500 * 2 ** this.attempts++) * (0.5 + this.random() / 2);
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = undefined;
        // With the client's own stores: a bare reconnect() swaps in empty ones, so the messages in flight
        // when the connection dropped would never be resent nor acknowledged (lost readings, and entries
        // left in client.outgoing for ever, which a graceful end() waits on).
        if (!this.stopped) client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore });
      }, delay);
    });
  }

  private loop(): void {
    if (this.stopped) return;
    void this.takeReading().catch((err: unknown) => this.logger.error({ err }, 'reading failed'));
    const jitter = 1 + (this.random() - 0.5) * 0.2;
    this.timer = setTimeout(() => this.loop(), this.options.intervalMs * jitter);
  }

  private async takeReading(): Promise<void> {
    // Stamped when taken, as firmware does, not when the seq reservation comes back: reservations of a
    // whole fleet share one file write, and under load two readings of a device could otherwise wait for
    // the same write and get the same millisecond — one (device, ts) for two readings, and the store
    // keeps one of them. Seqs are handed out in call order, so ts and seq rise together.
    const ts = Date.now();
    const seq = await this.options.seqs.take(this.id);
    if (this.stopped) return; // stop() came while the seq was being reserved: publish nothing after it
    this.send({ seq, ts, values: this.signals.next(ts) });
  }

  /** Publishes a reading at once, or, while offline or while older readings wait, keeps it in the buffer. */
  private sendReading(reading: Reading): void {
    if (this.connected && this.buffer.length === 0) this.publishReadings([reading]);
    else this.bufferReading(reading);
  }

  private bufferReading(reading: Reading): void {
    this.buffer.push(reading);
    if (this.buffer.length > this.options.bufferLimit) {
      this.buffer.shift();
      this.summary.droppedFromBuffer++;
    }
  }

  /** Sends what waited while offline, oldest first, in batches that keep their original timestamps. */
  private sendBuffer(): void {
    const batchSize = Math.min(this.options.maxBatch, LIMITS.maxReadingsPerMessage);
    while (this.buffer.length > 0 && this.connected) this.publishReadings(this.buffer.splice(0, batchSize));
  }

  private recordAcknowledged(readings: readonly Reading[]): void {
    const record = this.options.recordAckedReadings !== false;
    let range = this.summary.ackedSeqRange;
    for (const r of readings) {
      if (record) this.summary.ackedReadings.push([r.seq, r.ts]);
      range = range === null ? [r.seq, r.seq] : [Math.min(range[0], r.seq), Math.max(range[1], r.seq)];
    }
    this.summary.ackedSeqRange = range;
  }

  private publishReadings(readings: Reading[]): void {
    const payload = JSON.stringify(signTelemetry({ v: PROTOCOL_VERSION, device: this.id, readings }, this.key));
    this.summary.sent += readings.length;
    this.publish(topics.telemetry(this.id), payload, {}, () => {
      this.summary.acked += readings.length;
      this.recordAcknowledged(readings);
      this.options.onAcknowledged?.(this.id, readings);
    });
  }
}
