/**
 * One `/live` client's state: its subscriptions and what they add up to per device (cached, since the
 * fan-out asks for every device on every tick), the live readings held back while a history loads,
 * the identities already sent after a history, the values conflated for it, its liveness marks, and
 * what waits for its backlog to drain (its own frames, unread, and history loads).
 * The protocol (live-protocol.ts) changes it, the fan-out (fan-out.ts) reads it and sends through it.
 */
import type { WebSocket } from 'ws';
import type { LiveReading, LiveServerFrame } from '../core/live.ts';
import type { Logger } from '../core/logger.ts';
import type { SeenReadings } from './history.ts';
import type { DisplayMetrics } from './metrics.ts';

/** History requests a client may have running or queued; the server reads no further frame from it meanwhile. */
export const MAX_HISTORY_QUEUE = 4;

/**
 * Reading identities a client keeps after its histories, all devices together (8 bytes each, so 8 MB):
 * past it, the windows that end first close early. Closing a window early loses nothing in the usual
 * case; only a live reading that lags the store by seconds could then be sent twice.
 */
export const MAX_SEEN_PER_CLIENT = 1_000_000;

/** A frame as it came off the socket, kept while the server does not act on the client's frames. */
export interface InboundFrame {
  data: Buffer;
  isBinary: boolean;
}

export interface Subscription {
  devices: '*' | ReadonlySet<string>;
  metrics: ReadonlySet<string> | undefined;
  latest: boolean;
}

/** What a client gets of one device: the union of its subscriptions that name the device. */
export interface Effective {
  /** undefined: every metric. */
  metrics: ReadonlySet<string> | undefined;
  /** Only the newest value per metric (every matching subscription asked for `latest`). */
  latest: boolean;
}

/** The union of subscriptions: every metric any of them wants, `latest` only if all of them say so. */
export function mergeSubscriptions(subscriptions: readonly Subscription[]): Effective | null {
  if (subscriptions.length === 0) return null;
  let metrics: Set<string> | undefined = new Set();
  for (const s of subscriptions) {
    if (s.metrics === undefined) metrics = undefined;
    else if (metrics !== undefined) for (const m of s.metrics) metrics.add(m);
  }
  return { metrics, latest: subscriptions.every((s) => s.latest) };
}

export class LiveClient {
  readonly subscriptions = new Map<string, Subscription>();
  /** Devices whose live readings are held back while their history loads. */
  readonly holds = new Map<string, LiveReading[]>();
  /** After a history: identities already sent per device, checked on live readings until `until`. */
  readonly sent = new Map<string, { seen: SeenReadings; until: number }>();
  /** Newest value per `${device}\0${metric}` for a slow client or a `latest` subscription. */
  readonly merged = new Map<string, LiveReading>();
  /** Readings to send first in the next frame (those released after a history). */
  carry: LiveReading[] = [];
  statuses = new Map<string, LiveServerFrame>();
  /** Readings lost to conflation since the last frame that said so. */
  conflated = 0;
  /** Since when the client has had more than the slow mark unsent; undefined while it has not. */
  slowSince: number | undefined;
  /**
   * Set while the server has stopped reading from the client (its socket is paused): frames it had
   * already read wait here, in order, and the rest wait in the client's socket. At most one socket
   * read's worth (tens of KiB), since nothing more is read until it is handled.
   */
  inbox: InboundFrame[] | undefined;
  /** History loads waiting for the client's backlog to drain. */
  private drainWaiters: (() => void)[] = [];
  /** Answered the last ping. */
  alive = true;
  badFrames = 0;
  historyQueue = 0;
  private historyChain: Promise<void> = Promise.resolve();
  private effectiveCache = new Map<string, Effective | null>();
  private wildcardCache: Effective | null | undefined;
  private explicitCache: Set<string> | undefined;
  /** No filters, no holds, nothing conflated: the shared-fragment path applies. */
  simple = true;

  /** `log` is this client's own child logger (its id and address); `address` is the peer's IP address. */
  constructor(
    readonly ws: WebSocket,
    readonly log: Logger,
    private readonly metrics: DisplayMetrics,
    readonly address: string | undefined = undefined,
  ) {}

  /** Call after any change to subscriptions, holds or `sent`: drops the caches and re-decides `simple`. */
  changed(): void {
    this.effectiveCache.clear();
    this.wildcardCache = undefined;
    this.explicitCache = undefined;
    this.simple = this.holds.size === 0 && this.sent.size === 0 && [...this.subscriptions.values()].every((s) => s.metrics === undefined && !s.latest);
  }

  /** Some subscription is for devices "*". */
  get wildcard(): boolean {
    return this.wildcardOnly() !== null;
  }

  /** The subscriptions with devices "*" merged, or null when there is none. */
  private wildcardOnly(): Effective | null {
    if (this.wildcardCache === undefined) this.wildcardCache = mergeSubscriptions([...this.subscriptions.values()].filter((s) => s.devices === '*'));
    return this.wildcardCache;
  }

  /** What the client gets of `device`, or null when no subscription names it. */
  effective(device: string): Effective | null {
    let effective = this.effectiveCache.get(device);
    if (effective === undefined) {
      effective = mergeSubscriptions([...this.subscriptions.values()].filter((s) => s.devices === '*' || s.devices.has(device)));
      this.effectiveCache.set(device, effective);
    }
    return effective;
  }

  /** Every device named by a subscription. */
  explicitDevices(): ReadonlySet<string> {
    if (this.explicitCache === undefined) {
      this.explicitCache = new Set();
      for (const s of this.subscriptions.values()) if (s.devices !== '*') for (const d of s.devices) this.explicitCache.add(d);
    }
    return this.explicitCache;
  }

  /**
   * Runs history loads one after another, so one client cannot start many store queries at once.
   * False (nothing queued) when MAX_HISTORY_QUEUE are queued already; `done` runs after the task.
   */
  queueHistory(task: () => Promise<void>, done: () => void): boolean {
    if (this.historyQueue >= MAX_HISTORY_QUEUE) return false;
    this.historyQueue++;
    this.historyChain = this.historyChain.then(task).finally(() => {
      this.historyQueue--;
      done();
    });
    return true;
  }

  /**
   * After a history of `device`: what the client has of it, checked on its live readings until `until`,
   * within MAX_SEEN_PER_CLIENT for all devices together. Call changed() afterwards.
   */
  rememberSent(device: string, seen: SeenReadings, until: number): void {
    this.sent.set(device, { seen, until });
    let total = 0;
    for (const entry of this.sent.values()) total += entry.seen.size;
    if (total <= MAX_SEEN_PER_CLIENT) return;
    for (const [other, entry] of [...this.sent].sort(([, a], [, b]) => a.until - b.until)) {
      if (total <= MAX_SEEN_PER_CLIENT) break;
      if (other === device) continue;
      total -= entry.seen.size;
      this.sent.delete(other);
    }
  }

  /** Resolves once releaseDrainWaiters is called: when the client drained, or is gone. */
  waitForDrain(): Promise<void> {
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  releaseDrainWaiters(): void {
    if (this.drainWaiters.length === 0) return;
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  send(frame: LiveServerFrame): void {
    this.sendRaw(JSON.stringify(frame), 0);
  }

  /** Sends a serialised frame carrying `readings` readings; never waits (a backlog is the fan-out's concern). */
  sendRaw(text: string, readings: number): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(text);
    this.metrics.liveFrames.inc();
    if (readings > 0) this.metrics.liveDelivered.inc(readings);
  }
}
