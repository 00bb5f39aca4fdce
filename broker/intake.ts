/**
 * The intake: a PUBLISH at QoS 1 or 2 is acknowledged only once the broker has kept it, and not at all
 * while ingest is too far behind.
 *
 * Kept: aedes 1.2 writes a QoS 1 PUBACK first and only then publishes (lib/handlers/publish.js), so a
 * crash in between lost a message the device had been told was safe. Here the message is published —
 * queued for every persistent session it matches and written down in the session log
 * (broker/session-log.ts) — from inside `authorizePublish`, which aedes waits for before it writes the
 * PUBACK, and the PUBACK also waits for that record's fsync. aedes' own publish that follows is then
 * skipped for that packet. (The fsync is waited for here, not inside aedes' publish: see
 * broker/indexed-persistence.ts, PersistenceJournal.)
 *
 * Backpressure: past `high` messages queued for ingest (not yet acknowledged by it, plus those being
 * published), a PUBLISH is held — no PUBACK, and aedes reads nothing more from that connection until
 * it is let go (lib/client.js reads the next chunk only when the last one is handled), so TCP pushes back
 * on the device, which keeps the rest. Held messages go on, oldest first, once the queue is down to
 * `low`. The queue therefore never passes `high`, and the broker's memory stays bounded whatever is
 * offered. A device held longer than 1.5 times its keepalive is disconnected by aedes (its PINGREQs are
 * not read either); what it had not had acknowledged it sends again when it is back.
 */
import type { Aedes, Client, PublishPacket } from 'aedes';
import { Fifo } from '../core/fifo.ts';

type Done = (err?: Error | null) => void;
/** aedes' publish as it is (its typings give only the form without a client). */
type AedesPublish = (packet: PublishPacket, client: Client | null, done: Done) => void;

export interface IntakeOptions {
  /** Messages queued for ingest's sessions and not yet acknowledged by it. */
  queuedForIngest(): number;
  /** Settles once what the persistence has written down so far is durable (the session log's fsync). */
  synced(): Promise<void>;
  /** The marks; low below high (broker/index.ts checks the config). */
  high: number;
  low: number;
}

interface Held {
  client: Client;
  packet: PublishPacket;
  done: Done;
}

export class Intake {
  #aedesPublish: AedesPublish | undefined;
  readonly #queuedForIngest: () => number;
  readonly #synced: () => Promise<void>;
  readonly #high: number;
  readonly #low: number;
  readonly #published = new WeakSet<object>();
  readonly #held = new Fifo<Held>();
  /** Taken in, not yet queued and fsynced. */
  #inFlight = 0;
  #holding = false;
  /** For /metrics. */
  peak = 0;
  pauses = 0;
  heldTotal = 0;

  constructor(options: IntakeOptions) {
    this.#queuedForIngest = options.queuedForIngest;
    this.#synced = options.synced;
    this.#high = options.high;
    this.#low = options.low;
  }

  /** Takes over publishing for `aedes` (made after this, since its hooks call `take`). */
  attach(aedes: Aedes): void {
    const publish = (aedes.publish as unknown as AedesPublish).bind(aedes);
    this.#aedesPublish = publish;
    // aedes' publish after the PUBACK, for a packet published here already, does nothing more.
    aedes.publish = ((packet: PublishPacket, client: Client | Done | null, done?: Done) => {
      if (this.#published.has(packet)) {
        this.#published.delete(packet);
        (typeof client === 'function' ? client : done)?.(null);
        return;
      }
      publish(packet, client as Client | null, done as Done);
    }) as unknown as Aedes['publish'];
  }

  /** Messages queued for ingest and not yet acknowledged by it. */
  get queued(): number {
    return this.#queuedForIngest();
  }

  /**
   * What admission counts: the queue, with what is on its way into it. A message being queued is counted
   * twice for a moment (in the queue already, not yet done), so this errs high, and the queue stays at or
   * below the high mark.
   */
  get #committed(): number {
    return this.#queuedForIngest() + this.#inFlight;
  }

  get held(): number {
    return this.#held.length;
  }

  get holding(): boolean {
    return this.#holding;
  }

  /**
   * Called for a PUBLISH from `client` that is to be delivered; `done` lets aedes acknowledge it. A
   * QoS 0 message and a Will are passed straight on (no PUBACK to hold; a Will is the broker's own).
   */
  take(client: Client, packet: PublishPacket, done: Done): void {
    if (packet.qos === 0 || packet === (client as unknown as { will?: unknown }).will) {
      done(null);
      return;
    }
    if (!this.#holding && this.#committed >= this.#high) {
      this.#holding = true;
      this.pauses++;
    }
    if (this.#holding) {
      this.#held.push({ client, packet, done });
      this.heldTotal++;
      return;
    }
    this.#publish(client, packet, done);
  }

  /** Called as ingest acknowledges: lets held messages go once the queue is down to the low-water mark. */
  drained(): void {
    if (!this.#holding || this.#committed > this.#low) return;
    this.#holding = false;
    let next: Held | undefined;
    while (!this.#holding && (next = this.#held.peek()) !== undefined) {
      if (this.#committed >= this.#high) {
        this.#holding = true;
        this.pauses++;
        return;
      }
      this.#held.shift();
      // A device that went away meanwhile never had its PUBACK: it sends the message again.
      if ((next.client as unknown as { closed: boolean }).closed) next.done(new Error('client gone while its publish was held'));
      else this.#publish(next.client, next.packet, next.done);
    }
  }

  #settled(done: Done, err: Error | null): void {
    this.#inFlight--;
    done(err);
    this.drained();
  }

  #publish(client: Client, packet: PublishPacket, done: Done): void {
    this.#inFlight++;
    this.#published.add(packet);
    this.#aedesPublish!(packet, client, (err) => {
      // Measured here, just after the message was queued: the queue itself, each message counted once.
      const queue = this.#queuedForIngest();
      if (queue > this.peak) this.peak = queue;
      if (err) {
        this.#inFlight--;
        this.#published.delete(packet);
        done(err);
        this.drained();
        return;
      }
      // Queued and delivered in memory; the PUBACK waits for the fsync of what was written down for it.
      this.#synced().then(
        () => this.#settled(done, null),
        (syncErr: unknown) => this.#settled(done, syncErr as Error),
      );
    });
  }
}
