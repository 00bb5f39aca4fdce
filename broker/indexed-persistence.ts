/**
 * aedes' in-memory persistence with an indexed outgoing queue.
 *
 * The stock MemoryPersistence keeps each client's outgoing QoS 1/2 queue in an array and finds a packet
 * by scanning it, on every delivery (outgoingUpdate) and every PUBACK (outgoingClearMessageId). For a
 * persistent-session subscriber that falls behind — ingest during a burst — the queue grows to hundreds
 * of thousands of packets and the broker slows quadratically until it stalls (measured: 10,000 msg/s
 * offered, ingest's sustained rate fell to ~1,400/s with the stock persistence and held ~3,800/s with
 * this one on the same machine; `npx tsx bench/ingest.ts`).
 *
 * Here each queue is a Map in insertion (delivery) order keyed by broker id and counter, plus an index
 * from packet id to keys, so every operation is O(1). Everything else is inherited. The behaviour is
 * checked with aedes-persistence's own abstract test suite (test/broker/indexed-persistence.test.ts).
 *
 * Persistent sessions and retained messages are also mirrored here (the parent keeps them in private
 * fields), so that a broker stopping gracefully can save them and the next one restore them
 * (`exportSessions` / `importSessions`, saved by broker/session-file.ts). Without that, a restart of the
 * broker forgot ingest's session: telemetry that devices sent before ingest had subscribed again was
 * acknowledged to them and delivered to nobody.
 */
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';

const require = createRequire(import.meta.url);
// aedes-persistence ships CommonJS without typings for these internals.
const AsyncPersistence = require('aedes-persistence/asyncPersistence.js') as new (options?: unknown) => object;
const { CallBackPersistence } = require('aedes-persistence/callBackPersistence.js') as {
  CallBackPersistence: new (factory: (options: unknown) => object, options: unknown) => unknown;
};
const Packet = require('aedes-packet') as new (packet: unknown) => OutgoingPacket;

interface OutgoingPacket {
  brokerId: string;
  brokerCounter: number;
  messageId?: number;
}

/** A subscription as aedes persists it for a session that is not clean. */
export interface SessionSubscription {
  topic: string;
  qos: number;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
}

/** A stored PUBLISH (queued for a session, or retained). */
export interface StoredPublish {
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  /** A queued packet's identity in its queue (the broker that took it in, and its count there). */
  brokerId?: string;
  brokerCounter?: number;
}

export interface SessionsExport {
  retained: StoredPublish[];
  sessions: { clientId: string; subscriptions: SessionSubscription[]; outgoing: StoredPublish[] }[];
}

/**
 * Told of every change to what the persistence holds, after it is made in memory (broker/session-log.ts
 * writes them down). Subscription changes settle once durable, and aedes waits for them (the SUBACK
 * and CONNACK follow). Messages (queued, retained) are only written down here, never waited for inside
 * aedes' publish: aedes drops a delivery whose counter is below one it already delivered to that client
 * (lib/client.js, dedupe), so a message held back here while a later one (QoS 0, or with nothing to
 * queue) went out would be lost to that subscriber. broker/intake.ts waits for the fsync after aedes'
 * publish instead, before the PUBACK.
 */
export interface PersistenceJournal {
  subscribed(clientId: string, subs: SessionSubscription[]): Promise<void>;
  unsubscribed(clientId: string, topics: string[]): Promise<void>;
  cleaned(clientId: string): Promise<void>;
  retained(packet: StoredPublish): void;
  enqueued(clientIds: string[], packet: StoredPublish & { brokerId: string; brokerCounter: number }): void;
  /** A delivered packet was acknowledged; losing this record costs a redelivery, not data, so it is not waited for. */
  cleared(clientId: string, packet: { brokerId: string; brokerCounter: number }): void;
}

interface ClientQueue {
  packets: Map<string, OutgoingPacket>;
  /** Keys by packet id, oldest first (ids wrap at 65535, so one id may stand for several packets). */
  byMessageId: Map<number, string[]>;
}

const keyOf = (packet: OutgoingPacket): string => `${packet.brokerId}:${packet.brokerCounter}`;

interface MemoryPersistenceBase {
  addSubscriptions(client: { id: string }, subs: SessionSubscription[]): Promise<void>;
  removeSubscriptions(client: { id: string }, topics: string[]): Promise<void>;
  cleanSubscriptions(client: { id: string }): Promise<void>;
  storeRetained(packet: StoredPublish): Promise<void>;
}
const MemoryPersistence = AsyncPersistence as unknown as new (options?: unknown) => MemoryPersistenceBase;

class IndexedMemoryPersistence extends MemoryPersistence {
  #queues = new Map<string, ClientQueue>();
  /** Mirrors of the parent's private session subscriptions and retained messages, for export. */
  #sessions = new Map<string, Map<string, SessionSubscription>>();
  #retained = new Map<string, StoredPublish>();
  /** Set once what was restored is in (the import itself is not journaled again). */
  journal: PersistenceJournal | undefined;
  /** Called after a queued packet is cleared (broker/intake.ts resumes publishers as queues drain). */
  onCleared: (() => void) | undefined;

  /** Packets queued for a client and not yet acknowledged by it. */
  queuedFor(clientId: string): number {
    return this.#queues.get(clientId)?.packets.size ?? 0;
  }

  override async addSubscriptions(client: { id: string }, subs: SessionSubscription[]): Promise<void> {
    await super.addSubscriptions(client, subs);
    let stored = this.#sessions.get(client.id);
    if (stored === undefined) this.#sessions.set(client.id, (stored = new Map()));
    for (const sub of subs) stored.set(sub.topic, { topic: sub.topic, qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl });
    await this.journal?.subscribed(client.id, subs);
  }

  override async removeSubscriptions(client: { id: string }, topics: string[]): Promise<void> {
    await super.removeSubscriptions(client, topics);
    const stored = this.#sessions.get(client.id);
    for (const topic of topics) stored?.delete(topic);
    if (stored?.size === 0) this.#sessions.delete(client.id);
    await this.journal?.unsubscribed(client.id, topics);
  }

  override async cleanSubscriptions(client: { id: string }): Promise<void> {
    await super.cleanSubscriptions(client);
    this.#sessions.delete(client.id);
    await this.journal?.cleaned(client.id);
  }

  override async storeRetained(packet: StoredPublish): Promise<void> {
    await super.storeRetained(packet);
    if (packet.payload.length === 0) this.#retained.delete(packet.topic);
    else this.#retained.set(packet.topic, { topic: packet.topic, payload: packet.payload, qos: packet.qos, retain: true });
    this.journal?.retained(packet);
  }

  /**
   * Persistent sessions (subscriptions and what is queued for them, oldest first) and retained messages.
   * A client whose subscriptions are gone may still have a queue (aedes clears it at its next CONNECT).
   */
  exportSessions(): SessionsExport {
    const publish = (p: OutgoingPacket & Partial<StoredPublish>): StoredPublish => ({
      topic: p.topic!,
      payload: Buffer.isBuffer(p.payload) ? p.payload : Buffer.from(p.payload ?? ''),
      qos: p.qos ?? 1,
      retain: p.retain ?? false,
      brokerId: p.brokerId,
      brokerCounter: p.brokerCounter,
    });
    const clientIds = new Set([...this.#sessions.keys(), ...[...this.#queues].filter(([, q]) => q.packets.size > 0).map(([id]) => id)]);
    return {
      retained: [...this.#retained.values()],
      sessions: [...clientIds].map((clientId) => ({
        clientId,
        subscriptions: [...(this.#sessions.get(clientId)?.values() ?? [])],
        outgoing: [...(this.#queues.get(clientId)?.packets.values() ?? [])].map(publish),
      })),
    };
  }

  /** Restores an export into an empty persistence, before the broker takes connections. */
  async importSessions(saved: SessionsExport): Promise<void> {
    for (const packet of saved.retained) await this.storeRetained({ ...packet, retain: true });
    for (const session of saved.sessions) {
      if (session.subscriptions.length > 0) await this.addSubscriptions({ id: session.clientId }, session.subscriptions);
      // Each keeps the identity it was queued with (queues are keyed by it, so it must stay unique) and
      // is delivered with a fresh packet id.
      for (const packet of session.outgoing) await this.outgoingEnqueue({ clientId: session.clientId }, { cmd: 'publish', ...packet, dup: false });
    }
  }

  #queue(clientId: string): ClientQueue {
    let queue = this.#queues.get(clientId);
    if (queue === undefined) {
      queue = { packets: new Map(), byMessageId: new Map() };
      this.#queues.set(clientId, queue);
    }
    return queue;
  }

  async outgoingEnqueue(sub: { clientId: string }, packet: unknown): Promise<void> {
    await this.outgoingEnqueueCombi([sub], packet);
  }

  async outgoingEnqueueCombi(subs: { clientId: string }[], packet: unknown): Promise<void> {
    if (subs.length === 0) return;
    let stored: OutgoingPacket | undefined;
    for (const sub of subs) {
      stored = new Packet(packet);
      this.#queue(sub.clientId).packets.set(keyOf(stored), stored);
    }
    this.journal?.enqueued(
      subs.map((sub) => sub.clientId),
      stored as unknown as StoredPublish & OutgoingPacket,
    );
  }

  /** Records the packet id a queued packet was sent with (same contract as the stock persistence). */
  async outgoingUpdate(client: { id: string }, packet: OutgoingPacket): Promise<void> {
    const queue = this.#queue(client.id);
    const key = keyOf(packet);
    const stored = queue.packets.get(key);
    if (stored !== undefined) {
      stored.messageId = packet.messageId;
      this.#index(queue, packet.messageId, key);
      return;
    }
    // A packet of another broker (Redis scale-out) reusing a packet id: it replaces that entry in place.
    const existing = packet.messageId === undefined ? undefined : queue.byMessageId.get(packet.messageId)?.[0];
    if (existing !== undefined) queue.packets.set(existing, packet);
  }

  async outgoingClearMessageId(client: { id: string }, packet: OutgoingPacket): Promise<OutgoingPacket | undefined> {
    const queue = this.#queue(client.id);
    const keys = packet.messageId === undefined ? undefined : queue.byMessageId.get(packet.messageId);
    while (keys !== undefined && keys.length > 0) {
      const key = keys.shift()!;
      if (keys.length === 0) queue.byMessageId.delete(packet.messageId!);
      const stored = queue.packets.get(key);
      if (stored !== undefined && stored.messageId === packet.messageId) {
        queue.packets.delete(key);
        this.journal?.cleared(client.id, stored);
        this.onCleared?.();
        return stored;
      }
    }
    return undefined;
  }

  outgoingStream(client: { id: string }): Readable {
    // A copy, as the stock persistence gives: the queue may change while the stream is read.
    return Readable.from([...(this.#queues.get(client.id)?.packets.values() ?? [])]);
  }

  #index(queue: ClientQueue, messageId: number | undefined, key: string): void {
    if (messageId === undefined) return;
    const keys = queue.byMessageId.get(messageId);
    if (keys === undefined) queue.byMessageId.set(messageId, [key]);
    else if (!keys.includes(key)) keys.push(key);
  }
}

export type IndexedMemoryPersistenceAsync = IndexedMemoryPersistence;

/** The raw (promise-based) persistence, for aedes-persistence's abstract test suite. */
export function createIndexedMemoryPersistenceAsync(options: unknown = {}): IndexedMemoryPersistence {
  return new IndexedMemoryPersistence(options);
}

/** A persistence to hand to aedes: `Aedes.createBroker({ persistence: indexedMemoryPersistence() })`. */
export function indexedMemoryPersistence(options: unknown = {}): unknown {
  return new CallBackPersistence((opts) => new IndexedMemoryPersistence(opts), options);
}
