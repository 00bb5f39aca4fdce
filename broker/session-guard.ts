/**
 * What a persistent session (CleanSession 0) may keep: only filters its client may hold, checked
 * wherever aedes stores or restores them, whatever the persistence (memory, session file, Redis).
 *
 * aedes 1.2 stores the whole SUBSCRIBE of a persistent session as soon as one of its filters is granted
 * (lib/handlers/subscribe.js, storeSubscriptions: `addSubscriptions(client, packet.subscriptions)`),
 * refused filters included. The client got SUBACK 0x80 for a foreign filter, yet while it was offline
 * the broker queued what matched it, and delivered it when the client came back (issue 15, item 6).
 * Here, around the persistence aedes is given:
 *   - storing: `addSubscriptions` keeps only the filters the client's principal may hold (broker/acl.ts,
 *     `mayHoldFilter`: the same check as the SUBACK); nothing for a client that is not logged in;
 *   - restoring, at a CONNECT with CleanSession 0: aedes re-authorises each stored filter (our
 *     authorizeSubscribe); one refused now (another principal took over the client id, the ACL changed,
 *     an older broker stored it) is also removed from the store, before the CONNACK, so nothing more is
 *     queued for it; what was queued already is checked as it is delivered (broker/publish-gate.ts);
 *   - the session file: each session is saved with the principal it was granted to, and read back
 *     through `checkSaved` (broker/persistence.ts).
 */
import type { AedesOptions, Client } from 'aedes';
import { mayReceive, type Subscriber } from './acl.ts';
import type { SavedSessions } from './session-file.ts';

/** The part of an aedes persistence that holds sessions' subscriptions (memory and Redis alike). */
interface SubscriptionStore {
  addSubscriptions(client: { id: string }, subs: { topic: string }[]): Promise<void>;
  removeSubscriptions(client: { id: string }, topics: string[]): Promise<void>;
  subscriptionsByClient(client: { id: string }): Promise<object[]>;
  cleanSubscriptions(client: { id: string }): Promise<void>;
}

type Hook<K extends keyof AedesOptions> = NonNullable<AedesOptions[K]>;

export interface SessionGuardOptions {
  /** Who a client logged in as; undefined for anything else (the persistence also sees bare `{id}`s). */
  principalOf(client: Client): Subscriber | undefined;
  /** The subscribe ACL with the topic limits (`mayHoldFilter`). */
  mayHold(principal: Subscriber, filter: string): boolean;
  /** A stored filter was removed at a reconnect: its client may no longer hold it. */
  onRestoreRefused(client: Client, filter: string): void;
  /** The store could not remove it (it stays refused for the client; what it queues is dropped at delivery). */
  onRemoveFailed(client: Client, filter: string, err: Error): void;
}

export class SessionGuard {
  readonly #options: SessionGuardOptions;
  /** The subscriptions aedes read from the store to restore a session (it re-authorises each). */
  readonly #restored = new WeakSet<object>();
  /** Whom each stored session's filters were granted to, by client id (for the session file). */
  readonly #owners = new Map<string, Subscriber>();
  #store: SubscriptionStore | undefined;

  constructor(options: SessionGuardOptions) {
    this.#options = options;
  }

  /** Wraps the persistence aedes will be given, in place. Anything imported into it must come first. */
  install(persistence: unknown): void {
    const store = persistence as SubscriptionStore;
    const add = store.addSubscriptions.bind(store);
    const byClient = store.subscriptionsByClient.bind(store);
    const clean = store.cleanSubscriptions.bind(store);
    const guardedAdd = async (client: { id: string }, subs: { topic: string }[]): Promise<void> => {
      const principal = this.#options.principalOf(client as Client);
      if (principal === undefined) return;
      const allowed = subs.filter((sub) => this.#options.mayHold(principal, sub.topic));
      if (allowed.length === 0) return;
      this.#owners.set(client.id, principal);
      await add(client, allowed);
    };
    // aedes 1.2 calls addSubscriptions once per filter of a SUBSCRIBE, each time with the packet's whole
    // list (lib/handlers/subscribe.js, storeSubscriptions), all at once. The Redis persistence's calls
    // then wait for their own broadcast under one key (aedes-persistence broadcastPersistence.js,
    // #waitFor: a Map keyed by client and first filter), so all but one never resolved, and a SUBSCRIBE
    // of several filters by a persistent session never got its SUBACK: ingest (three filters since the
    // payload mappings) received nothing from a broker with SENSORPIPE_REDIS_URL. One store per list.
    const storing = new WeakMap<object, Promise<void>>();
    store.addSubscriptions = (client, subs) => {
      let pending = storing.get(subs);
      if (pending === undefined) {
        pending = guardedAdd(client, subs);
        storing.set(subs, pending);
      }
      return pending;
    };
    store.subscriptionsByClient = async (client) => {
      const subs = await byClient(client);
      for (const sub of subs) this.#restored.add(sub);
      return subs;
    };
    store.cleanSubscriptions = async (client) => {
      this.#owners.delete(client.id);
      await clean(client);
    };
    this.#store = store;
  }

  /**
   * aedes' authorizeSubscribe, with one more duty: a stored filter refused as its session is restored
   * is removed from the store before the refusal is passed on (and so before the CONNACK).
   */
  authorizeSubscribe(authorize: Hook<'authorizeSubscribe'>): Hook<'authorizeSubscribe'> {
    return (client, subscription, done) => {
      if (!this.#restored.has(subscription)) {
        authorize(client, subscription, done);
        return;
      }
      authorize(client, subscription, (err, granted) => {
        const principal = this.#options.principalOf(client);
        if (err !== null || granted || this.#store === undefined) {
          // What is left of the session is now this principal's (and was allowed to the one before).
          if (granted && principal !== undefined) this.#owners.set(client.id, principal);
          done(err, granted);
          return;
        }
        this.#options.onRestoreRefused(client, subscription.topic);
        this.#store.removeSubscriptions(client, [subscription.topic]).then(
          () => done(null, null),
          (removeErr: unknown) => {
            this.#options.onRemoveFailed(client, subscription.topic, removeErr as Error);
            done(null, null);
          },
        );
      });
    };
  }

  /** Whom a stored session's filters were granted to (undefined: not known here). */
  ownerOf(clientId: string): Subscriber | undefined {
    return this.#owners.get(clientId);
  }

  /**
   * Sessions read back from the session file, checked before they are stored: each against the
   * principal it was saved with or, for a session saved without one, the device whose id is its client
   * id (`deviceOwner`); filters it may not hold and queued messages it may not receive are left out.
   * A session with neither (a service's, saved by an older broker) is kept whole: it is checked when its
   * client logs in (above). Returns what was left out, for the log.
   */
  checkSaved(saved: SavedSessions, deviceOwner: (clientId: string) => Subscriber | undefined): { sessions: SavedSessions; droppedFilters: number; droppedMessages: number } {
    let droppedFilters = 0;
    let droppedMessages = 0;
    const sessions = saved.sessions.map((session) => {
      const owner = session.owner ?? deviceOwner(session.clientId);
      if (owner === undefined) return session;
      this.#owners.set(session.clientId, owner);
      const subscriptions = session.subscriptions.filter((sub) => this.#options.mayHold(owner, sub.topic));
      const outgoing = session.outgoing.filter((packet) => mayReceive(owner, packet.topic));
      droppedFilters += session.subscriptions.length - subscriptions.length;
      droppedMessages += session.outgoing.length - outgoing.length;
      return { ...session, owner, subscriptions, outgoing };
    });
    return { sessions: { retained: saved.retained, sessions }, droppedFilters, droppedMessages };
  }
}
