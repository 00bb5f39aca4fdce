/**
 * ingest's MQTT connection: a service account with a persistent session, telemetry in at QoS 1, and
 * a PUBACK for each message only once the caller says it is durable (`ack`).
 *
 * MQTT.js handles incoming packets one at a time and sends the PUBACK right after `handleMessage`
 * calls back, so delaying that callback would stall every later message behind the slowest batch.
 * Instead `handleMessage` calls back at once and the PUBACK it triggers is held here until the message
 * is acknowledged. PUBACKs still leave in the order the PUBLISH packets arrived [MQTT-4.6.0-2]; the
 * callback is held only when too many messages, or too many payload bytes, are unacknowledged, which
 * stops reading the socket and lets the broker hold the rest (backpressure). The byte bound matters for
 * messages that carry many readings: 20,000 of a device's 100-reading catch-up messages held 1 GiB in
 * ingest (bench/ingest.ts --per-message 100 at 150,000 readings/s), 20,000 one-reading ones 2 MiB.
 *
 * This reaches into MQTT.js's private `_sendPacket`; the version is pinned (5.16.0) and the ingest
 * tests exercise this path end to end.
 */
import { Fifo } from '../core/fifo.ts';
import type { Writable } from 'node:stream';
import mqtt, { type IPublishPacket, type MqttClient, type Packet } from 'mqtt';
import type { Logger } from '../core/logger.ts';

export interface IncomingMessage {
  topic: string;
  payload: Buffer;
  /** Marks the message durable; its PUBACK leaves once every earlier message is acknowledged too. */
  ack(): void;
}

export interface IngestLinkOptions {
  url: string;
  username: string;
  password?: string | undefined;
  clientId: string;
  /** Topic filters to subscribe to at QoS 1. */
  subscriptions: string[];
  protocolVersion: 4 | 5;
  maxUnacked: number;
  /** Payload bytes of unacknowledged messages past which reading stops (one message may cross it). */
  maxUnackedBytes: number;
  logger: Logger;
  onMessage(message: IncomingMessage): void;
}

/**
 * A QoS 1 message between its arrival and its PUBACK. It is the IncomingMessage handed to the caller
 * too: one object per message, and no closure (this runs for every message).
 */
class InFlightMessage implements IncomingMessage {
  done = false;
  /** The PUBACK MQTT.js wanted to send, held until this message and all before it are done. */
  puback: Packet | undefined = undefined;

  constructor(
    readonly topic: string,
    readonly payload: Buffer,
    /** The connection it arrived on (see resetSession). */
    readonly generation: number,
    private readonly onAck: (message: InFlightMessage) => void,
  ) {}

  ack(): void {
    this.onAck(this);
  }
}

const noAck = (): void => {};

type SendPacket = (packet: Packet, cb?: () => void, cbStorePut?: () => void, noStore?: boolean) => void;

/** MQTT.js's keepalive timer is re-armed on a received packet at most this often (see below). */
const PING_RESCHEDULE_MS = 1000;
/** Publishes held in one socket write at most (see coalesceWrites). */
const COALESCE_MAX_PUBLISHES = 256;

export class IngestLink {
  readonly client: MqttClient;
  private queue = new Fifo<InFlightMessage>();
  private slotsByMessageId = new Map<number, InFlightMessage>();
  private sendPacket!: SendPacket;
  private readonly markDone = (message: InFlightMessage): void => this.acknowledge(message);
  private generation = 0;
  private notDone = 0;
  private pubacksSent = 0;
  private notDoneBytes = 0;
  private held = new Fifo<() => void>();
  private pingRescheduledAt = 0;
  private corked: Writable | undefined;
  private corkedPublishes = 0;
  private subscribed!: () => void;
  /** Resolves once the first connection is up and subscribed (or resumed a session). */
  readonly ready = new Promise<void>((resolve) => (this.subscribed = resolve));

  constructor(private readonly options: IngestLinkOptions) {
    this.client = mqtt.connect(options.url, {
      clientId: options.clientId,
      username: options.username,
      password: options.password,
      clean: false, // a persistent session: messages wait in the broker while ingest restarts
      protocolVersion: options.protocolVersion,
      ...(options.protocolVersion === 5 ? { properties: { sessionExpiryInterval: 0xffffffff } } : {}),
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      manualConnect: true,
      // MQTT.js logs every packet through `debug`, a dozen calls per message even when DEBUG is off:
      // at 10,000 messages/s that was ~2% of ingest's CPU. Its packet dumps would also carry payloads,
      // signatures included, which must never reach a log; so they are switched off here.
      log: () => {},
    });
    this.installAckControl();
    this.client.on('connect', (connack) => {
      options.logger.info({ sessionPresent: connack.sessionPresent }, 'connected to the broker');
      if (connack.sessionPresent) {
        options.logger.info('session resumed; subscriptions kept by the broker');
        this.subscribed();
        // A session saved by an older ingest may lack a filter added since (the payload mappings'
        // topics): subscribing again to what it holds changes nothing [MQTT-3.8.4-3], and adds the rest.
        this.client.subscribe(options.subscriptions, { qos: 1 }, (err, granted) => {
          const refused = granted?.filter((g) => g.qos === 128) ?? [];
          if (err || refused.length > 0) options.logger.error({ err, refused: refused.map((g) => g.topic) }, 'renewing the subscriptions failed');
        });
        return;
      }
      this.client.subscribe(options.subscriptions, { qos: 1 }, (err, granted) => {
        if (err) options.logger.error({ err }, 'subscribe failed');
        const refused = granted?.filter((g) => g.qos === 128) ?? [];
        if (refused.length > 0) options.logger.error({ refused: refused.map((g) => g.topic) }, 'broker refused the subscription');
        else if (!err) {
          options.logger.info({ subscriptions: options.subscriptions }, 'subscribed');
          this.subscribed();
        }
      });
    });
    // MQTT.js counts only acks and PINGRESP as signs of life, not incoming PUBLISH packets. Under a
    // backlog the PINGRESP waits behind thousands of messages and MQTT.js would drop a perfectly busy
    // connection ("Keepalive timeout"). Any packet received proves the link alive; ingest's own
    // PUBACKs keep the broker's side of keepalive satisfied [MQTT-3.1.2-23]. Re-arming the timer costs
    // a clearTimeout and a setTimeout, so it is done at most once a second (the keepalive is a minute).
    this.client.on('packetreceive', () => {
      const now = Date.now();
      if (now - this.pingRescheduledAt < PING_RESCHEDULE_MS) return;
      this.pingRescheduledAt = now;
      this.client.reschedulePing(true);
    });
    this.client.on('close', () => this.resetSession());
    this.client.on('error', (err) => options.logger.warn({ err: err.message }, 'mqtt error'));
  }

  connect(): void {
    this.client.connect();
  }

  get unacknowledged(): number {
    return this.notDone;
  }

  /** PUBACKs sent since start (read by /metrics: an ingest that stops acknowledging shows as a flat line). */
  get acknowledged(): number {
    return this.pubacksSent;
  }

  get unacknowledgedBytes(): number {
    return this.notDoneBytes;
  }

  publish(topic: string, payload: string, options: { retain?: boolean; qos?: 0 | 1 } = {}): void {
    this.coalesceWrites();
    // The live feed is QoS 0: a viewer wants the newest value, not a backlog. Device counts are QoS 1
    // (retained state that the alerts component reads as increases: it must not miss one).
    this.client.publish(topic, payload, { qos: options.qos ?? 0, retain: options.retain ?? false });
  }

  /**
   * Holds the socket's writes until the end of this turn of the event loop (or COALESCE_MAX_PUBLISHES
   * publishes), so that they leave in one writev. MQTT.js handles each incoming packet in its own tick
   * and mqtt-packet uncorks after every packet, so each live-feed publish was a system call of its own:
   * at 10,000 messages/s that was a tenth of ingest's CPU. PUBACKs sent meanwhile join the same write;
   * the delay is at most the rest of the current turn.
   */
  private coalesceWrites(): void {
    if (this.corked !== undefined) {
      if (++this.corkedPublishes < COALESCE_MAX_PUBLISHES) return;
      this.corkedPublishes = 0;
      this.corked.uncork();
      this.corked.cork();
      return;
    }
    const stream = (this.client as { stream?: Partial<Writable> }).stream;
    if (typeof stream?.cork !== 'function' || typeof stream.uncork !== 'function') return;
    const corked = stream as Writable;
    corked.cork();
    this.corked = corked;
    this.corkedPublishes = 0;
    setImmediate(() => {
      this.corked = undefined;
      corked.uncork();
    });
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }

  private installAckControl(): void {
    const client = this.client;
    const internals = client as unknown as { _sendPacket: SendPacket };
    const original = internals._sendPacket.bind(client);
    this.sendPacket = original;
    internals._sendPacket = (packet, cb, cbStorePut, noStore) => {
      const slot = packet.cmd === 'puback' && packet.messageId !== undefined ? this.slotsByMessageId.get(packet.messageId) : undefined;
      if (slot === undefined || packet.cmd !== 'puback') {
        original(packet, cb, cbStorePut, noStore);
        return;
      }
      this.slotsByMessageId.delete(packet.messageId!);
      slot.puback = packet;
      cb?.(); // let MQTT.js read the next packet now; the PUBACK itself waits
      this.drain();
    };

    client.handleMessage = (packet: Packet, callback: (error?: Error) => void) => {
      const publish = packet as IPublishPacket;
      if (publish.qos === 0 || publish.messageId === undefined) {
        this.options.onMessage({ topic: publish.topic, payload: publish.payload as Buffer, ack: noAck });
        callback();
        return;
      }
      const message = new InFlightMessage(publish.topic, publish.payload as Buffer, this.generation, this.markDone);
      this.queue.push(message);
      this.slotsByMessageId.set(publish.messageId, message);
      this.notDone++;
      this.notDoneBytes += message.payload.length;
      this.options.onMessage(message);
      if (this.full()) this.held.push(callback);
      else callback();
    };
  }

  private acknowledge(message: InFlightMessage): void {
    if (message.done) return;
    message.done = true;
    if (message.generation !== this.generation) return; // its connection is gone; the broker redelivers
    this.notDone--;
    this.notDoneBytes -= message.payload.length;
    while (this.held.length > 0 && !this.full()) this.held.shift()!();
    this.drain();
  }

  private full(): boolean {
    return this.notDone >= this.options.maxUnacked || this.notDoneBytes >= this.options.maxUnackedBytes;
  }

  private drain(): void {
    for (let head = this.queue.peek(); head?.done === true && head.puback !== undefined; head = this.queue.peek()) {
      this.queue.shift();
      this.sendPacket(head.puback);
      this.pubacksSent++;
    }
  }

  /** A new connection: unsent PUBACKs refer to packet ids of the old one and must never be sent. */
  private resetSession(): void {
    if (this.queue.length === 0 && this.held.length === 0) return;
    this.generation++;
    this.queue = new Fifo();
    this.slotsByMessageId.clear();
    this.notDone = 0;
    this.notDoneBytes = 0;
    for (const release of this.held.takeAll()) release();
  }
}
