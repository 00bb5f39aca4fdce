/**
 * ingest's MQTT connection: a service account with a persistent session, telemetry in at QoS 1, and
 * a PUBACK for each message only once the caller says it is durable (`ack`).
 *
 * MQTT.js handles incoming packets one at a time and sends the PUBACK right after `handleMessage`
 * calls back, so delaying that callback would stall every later message behind the slowest batch.
 * Instead `handleMessage` calls back at once and the PUBACK it triggers is held here until the message
 * is acknowledged. PUBACKs still leave in the order the PUBLISH packets arrived [MQTT-4.6.0-2]; the
 * callback is held only when too many messages are unacknowledged, which stops reading the socket and
 * lets the broker hold the rest (backpressure).
 *
 * This reaches into MQTT.js's private `_sendPacket`; the version is pinned (5.16.0) and the ingest
 * tests exercise this path end to end.
 */
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
  logger: Logger;
  onMessage(message: IncomingMessage): void;
}

interface AckSlot {
  generation: number;
  done: boolean;
  /** The PUBACK MQTT.js wanted to send, held until this slot and all before it are done. */
  send?: () => void;
}

type SendPacket = (packet: Packet, cb?: () => void, cbStorePut?: () => void, noStore?: boolean) => void;

export class IngestLink {
  readonly client: MqttClient;
  private queue: AckSlot[] = [];
  private slotsByMessageId = new Map<number, AckSlot>();
  private generation = 0;
  private notDone = 0;
  private held: (() => void)[] = [];
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
    });
    this.installAckControl();
    this.client.on('connect', (connack) => {
      options.logger.info({ sessionPresent: connack.sessionPresent }, 'connected to the broker');
      if (connack.sessionPresent) {
        options.logger.info('session resumed; subscriptions kept by the broker');
        this.subscribed();
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
    // PUBACKs keep the broker's side of keepalive satisfied [MQTT-3.1.2-23].
    this.client.on('packetreceive', () => this.client.reschedulePing(true));
    this.client.on('close', () => this.resetSession());
    this.client.on('error', (err) => options.logger.warn({ err: err.message }, 'mqtt error'));
  }

  connect(): void {
    this.client.connect();
  }

  get unacknowledged(): number {
    return this.notDone;
  }

  publish(topic: string, payload: string, options: { retain?: boolean } = {}): void {
    // The live feed is QoS 0: a viewer wants the newest value, not a backlog.
    this.client.publish(topic, payload, { qos: 0, retain: options.retain ?? false });
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }

  private installAckControl(): void {
    const client = this.client;
    const internals = client as unknown as { _sendPacket: SendPacket };
    const original = internals._sendPacket.bind(client);
    internals._sendPacket = (packet, cb, cbStorePut, noStore) => {
      const slot = packet.cmd === 'puback' && packet.messageId !== undefined ? this.slotsByMessageId.get(packet.messageId) : undefined;
      if (slot === undefined || packet.cmd !== 'puback') {
        original(packet, cb, cbStorePut, noStore);
        return;
      }
      this.slotsByMessageId.delete(packet.messageId!);
      slot.send = () => original(packet);
      cb?.(); // let MQTT.js read the next packet now; the PUBACK itself waits
      this.drain();
    };

    client.handleMessage = (packet: Packet, callback: (error?: Error) => void) => {
      const publish = packet as IPublishPacket;
      if (publish.qos === 0 || publish.messageId === undefined) {
        this.options.onMessage({ topic: publish.topic, payload: publish.payload as Buffer, ack: () => {} });
        callback();
        return;
      }
      const slot: AckSlot = { generation: this.generation, done: false };
      this.queue.push(slot);
      this.slotsByMessageId.set(publish.messageId, slot);
      this.notDone++;
      this.options.onMessage({ topic: publish.topic, payload: publish.payload as Buffer, ack: () => this.markDone(slot) });
      if (this.notDone >= this.options.maxUnacked) this.held.push(() => callback());
      else callback();
    };
  }

  private markDone(slot: AckSlot): void {
    if (slot.done) return;
    slot.done = true;
    if (slot.generation !== this.generation) return; // its connection is gone; the broker redelivers
    this.notDone--;
    while (this.held.length > 0 && this.notDone < this.options.maxUnacked) this.held.shift()!();
    this.drain();
  }

  private drain(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (!head.done || head.send === undefined) return;
      this.queue.shift();
      head.send();
    }
  }

  /** A new connection: unsent PUBACKs refer to packet ids of the old one and must never be sent. */
  private resetSession(): void {
    if (this.queue.length === 0 && this.held.length === 0) return;
    this.generation++;
    this.queue = [];
    this.slotsByMessageId.clear();
    this.notDone = 0;
    const held = this.held;
    this.held = [];
    for (const release of held) release();
  }
}
