/**
 * The live hub behind `/live`: clients, their subscriptions, and one frame per client per tick.
 *
 * Readings arrive from the pipeline feed and are collected per device until the next tick. Then every
 * client gets one `readings` frame with what it subscribed to. Clients that take everything unfiltered
 * share serialised fragments (a frame is built from per-device JSON made once per tick), so a thousand
 * viewers of the fleet cost one serialisation, not a thousand.
 *
 * A client whose socket does not drain (more than `slowBytes` unsent) is conflated: it keeps only the
 * newest value per device and metric, the readings it missed are counted, and it gets the newest values
 * once it drains. A client that stays slow for `stuckMs`, or misses a pong while slow, is disconnected
 * (counted as `slow`). Nothing a slow client does delays the frames of others: sends never wait, and
 * the hub never buffers more than one conflated value per (device, metric) for it.
 */
import type { WebSocket } from 'ws';
import { SensorpipeError, isSensorpipeError, type ErrorCode } from '../core/errors.ts';
import {
  LIVE_CLOSE,
  LIVE_LIMITS,
  LIVE_PROTOCOL_VERSION,
  LiveClientFrameSchema,
  type LiveReading,
  type LiveServerFrame,
  type LiveSubscribe,
} from '../core/live.ts';
import type { Logger } from '../core/logger.ts';
import { parseTimeParam } from '../core/query.ts';
import type { StatusMessage, VerifiedReadings } from '../core/schemas.ts';
import type { TimeSeriesStore } from '../store/index.ts';
import { RECENT_MS, RecentReadings, filterValues, loadHistory, readingsAfterHistory, unseen } from './history.ts';
import type { DisplayMetrics } from './metrics.ts';

export interface HubOptions {
  tickMs: number;
  slowBytes: number;
  stuckMs: number;
  heartbeatMs: number;
  /** ingest's max-future: readings up to this far ahead are part of history. */
  aheadMs: number;
  store: TimeSeriesStore;
  metrics: DisplayMetrics;
  logger: Logger;
  /** Current status of a device, sent when a subscription names it. */
  statusOf(device: string): Pick<StatusMessage, 'state' | 'since'> | undefined;
}

/** Bad frames a client may send before it is disconnected. */
const MAX_BAD_FRAMES = 10;
/** History requests a client may have running or queued. */
const MAX_HISTORY_QUEUE = 4;

interface Subscription {
  devices: '*' | ReadonlySet<string>;
  metrics: ReadonlySet<string> | undefined;
  latest: boolean;
}

/** What a client gets of one device: the union of its subscriptions that name the device. */
interface Effective {
  /** undefined: every metric. */
  metrics: ReadonlySet<string> | undefined;
  /** Only the newest value per metric (every matching subscription asked for `latest`). */
  latest: boolean;
}

class LiveClient {
  readonly subscriptions = new Map<string, Subscription>();
  /** Devices whose live readings are held back while their history loads. */
  readonly holds = new Map<string, LiveReading[]>();
  /** After a history: identities already sent per device, checked on live readings until `until`. */
  readonly sent = new Map<string, { seen: Set<string>; until: number }>();
  /** Newest value per `${device}\0${metric}` for a slow client or a `latest` subscription. */
  readonly merged = new Map<string, LiveReading>();
  /** Readings to send first in the next frame (those released after a history). */
  carry: LiveReading[] = [];
  statuses = new Map<string, LiveServerFrame>();
  conflated = 0;
  slowSince: number | undefined;
  alive = true;
  badFrames = 0;
  historyQueue = 0;
  private historyChain: Promise<void> = Promise.resolve();
  private effectiveCache = new Map<string, Effective | null>();
  private wildcardCache: Effective | null | undefined;
  private explicitCache: Set<string> | undefined;
  /** No filters, no holds, nothing conflated: the shared-fragment path applies. */
  simple = true;

  constructor(readonly ws: WebSocket) {}

  changed(): void {
    this.effectiveCache.clear();
    this.wildcardCache = undefined;
    this.explicitCache = undefined;
    this.simple = this.holds.size === 0 && this.sent.size === 0 && [...this.subscriptions.values()].every((s) => s.metrics === undefined && !s.latest);
  }

  get wildcard(): boolean {
    return this.wildcardOnly() !== null;
  }

  /** The subscriptions with devices "*" merged, or null when there is none. */
  private wildcardOnly(): Effective | null {
    if (this.wildcardCache === undefined) this.wildcardCache = merge([...this.subscriptions.values()].filter((s) => s.devices === '*'));
    return this.wildcardCache;
  }

  effective(device: string): Effective | null {
    let effective = this.effectiveCache.get(device);
    if (effective === undefined) {
      effective = merge([...this.subscriptions.values()].filter((s) => s.devices === '*' || s.devices.has(device)));
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

  /** Runs history loads one after another, so one client cannot start many store queries at once. */
  queueHistory(task: () => Promise<void>): boolean {
    if (this.historyQueue >= MAX_HISTORY_QUEUE) return false;
    this.historyQueue++;
    this.historyChain = this.historyChain.then(task).finally(() => this.historyQueue--);
    return true;
  }
}

function merge(subscriptions: Subscription[]): Effective | null {
  if (subscriptions.length === 0) return null;
  let metrics: Set<string> | undefined = new Set();
  for (const s of subscriptions) {
    if (s.metrics === undefined) metrics = undefined;
    else if (metrics !== undefined) for (const m of s.metrics) metrics.add(m);
  }
  return { metrics, latest: subscriptions.every((s) => s.latest) };
}


export class LiveHub {
  private readonly clients = new Set<LiveClient>();
  /** Readings received since the last tick, by device. */
  private tickReadings = new Map<string, LiveReading[]>();
  private readonly recent = new RecentReadings();
  private readonly tickTimer: NodeJS.Timeout;
  private readonly heartbeatTimer: NodeJS.Timeout;
  private readonly pruneTimer: NodeJS.Timeout;

  constructor(private readonly options: HubOptions) {
    this.tickTimer = setInterval(() => this.tick(), options.tickMs);
    this.heartbeatTimer = setInterval(() => this.heartbeat(), options.heartbeatMs);
    this.pruneTimer = setInterval(() => this.recent.prune(Date.now()), 10_000);
    for (const timer of [this.tickTimer, this.heartbeatTimer, this.pruneTimer]) timer.unref();
  }

  get clientCount(): number {
    return this.clients.size;
  }

  // ---- from the pipeline --------------------------------------------------------------------------------

  publishReadings(message: VerifiedReadings): void {
    const readings: LiveReading[] = message.readings.map((r) => [message.device, r.seq, r.ts, r.values]);
    this.recent.add(message.device, readings, Date.now());
    const pending = this.tickReadings.get(message.device);
    if (pending === undefined) this.tickReadings.set(message.device, readings);
    else for (const r of readings) pending.push(r);
  }

  publishStatus(message: StatusMessage): void {
    const frame: LiveServerFrame = { type: 'status', device: message.device, state: message.state, since: message.since };
    for (const client of this.clients) if (client.effective(message.device) !== null) client.statuses.set(message.device, frame);
  }

  // ---- clients -------------------------------------------------------------------------------------------

  accept(ws: WebSocket): void {
    const client = new LiveClient(ws);
    this.clients.add(client);
    this.options.metrics.liveClients.set(this.clients.size);
    ws.on('pong', () => (client.alive = true));
    ws.on('message', (data, isBinary) => this.receive(client, data as Buffer, isBinary));
    ws.on('close', () => {
      this.clients.delete(client);
      this.options.metrics.liveClients.set(this.clients.size);
    });
    ws.on('error', (err) => this.options.logger.debug({ err: err.message }, 'live client error'));
    this.send(client, {
      type: 'welcome',
      v: LIVE_PROTOCOL_VERSION,
      serverTime: Date.now(),
      tickMs: this.options.tickMs,
      limits: { maxSubscriptions: LIVE_LIMITS.maxSubscriptionsPerClient, maxDevicesPerSubscription: LIVE_LIMITS.maxDevicesPerSubscription, maxHistoryDevices: LIVE_LIMITS.maxHistoryDevices },
    });
  }

  private receive(client: LiveClient, data: Buffer, isBinary: boolean): void {
    let id: string | undefined;
    try {
      if (isBinary) throw new SensorpipeError('PAYLOAD_INVALID', 'frames are JSON text');
      let json: unknown;
      try {
        json = JSON.parse(data.toString('utf8'));
      } catch {
        throw new SensorpipeError('PAYLOAD_INVALID', 'a frame is one JSON object');
      }
      if (typeof json === 'object' && json !== null && typeof (json as { id?: unknown }).id === 'string') id = (json as { id: string }).id.slice(0, 32);
      const parsed = LiveClientFrameSchema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new SensorpipeError('PAYLOAD_INVALID', `${issue?.path.join('.') || 'frame'}: ${issue?.message ?? 'invalid'}`);
      }
      const frame = parsed.data;
      if (frame.type === 'subscribe') this.subscribe(client, frame);
      else if (client.subscriptions.delete(frame.id)) {
        client.changed();
        this.send(client, { type: 'unsubscribed', id: frame.id });
      } else throw new SensorpipeError('NOT_FOUND', `no subscription ${frame.id}`);
    } catch (err) {
      const code: ErrorCode = isSensorpipeError(err) ? err.code : 'INTERNAL';
      this.options.metrics.liveBadFrames.inc({ code });
      this.send(client, { type: 'error', code, message: (err as Error).message, ...(id === undefined ? {} : { id }) });
      if (++client.badFrames >= MAX_BAD_FRAMES) this.disconnect(client, 'bad-frames', LIVE_CLOSE.badFrames, 'too many bad frames');
    }
  }

  private subscribe(client: LiveClient, frame: LiveSubscribe): void {
    if (!client.subscriptions.has(frame.id) && client.subscriptions.size >= LIVE_LIMITS.maxSubscriptionsPerClient) {
      throw new SensorpipeError('LIMIT_EXCEEDED', `at most ${LIVE_LIMITS.maxSubscriptionsPerClient} subscriptions per client`);
    }
    const devices = frame.devices === '*' ? '*' : new Set(frame.devices);
    let from: number | undefined;
    const now = Date.now();
    if (frame.history !== undefined) {
      if (devices === '*') throw new SensorpipeError('QUERY_INVALID', 'history needs a list of devices, not "*"');
      if (devices.size > LIVE_LIMITS.maxHistoryDevices) throw new SensorpipeError('LIMIT_EXCEEDED', `history for at most ${LIVE_LIMITS.maxHistoryDevices} devices per subscription`);
      from = typeof frame.history.from === 'number' ? frame.history.from : parseTimeParam(frame.history.from, now);
      if (!Number.isSafeInteger(from) || from >= now) throw new SensorpipeError('QUERY_RANGE_INVALID', 'history.from must be a time before now (ms, ISO-8601 or relative such as -1h)');
    }
    const subscription: Subscription = { devices, metrics: frame.metrics === undefined ? undefined : new Set(frame.metrics), latest: frame.latest === true };
    const historyDevices = from === undefined || devices === '*' ? [] : [...devices];
    if (historyDevices.length > 0) {
      const holds = historyDevices.filter((d) => !client.holds.has(d));
      for (const device of holds) client.holds.set(device, []);
      const started = client.queueHistory(() => this.sendHistory(client, frame, historyDevices, holds, from!, now));
      if (!started) {
        for (const device of holds) client.holds.delete(device);
        throw new SensorpipeError('LIMIT_EXCEEDED', `at most ${MAX_HISTORY_QUEUE} history requests at once`);
      }
    }
    client.subscriptions.set(frame.id, subscription);
    client.changed();
    this.send(client, { type: 'subscribed', id: frame.id, devices: devices === '*' ? '*' : devices.size });
    if (devices !== '*') {
      for (const device of devices) {
        const status = this.options.statusOf(device);
        if (status !== undefined) client.statuses.set(device, { type: 'status', device, state: status.state, since: status.since });
      }
    }
  }

  /** Sends each device's history, then releases its held live readings without those the history had. */
  private async sendHistory(client: LiveClient, frame: LiveSubscribe, devices: string[], holds: string[], from: number, now: number): Promise<void> {
    for (const device of devices) {
      const recent = this.recent.snapshot(device);
      try {
        const history = await loadHistory(this.options.store, {
          id: frame.id,
          device,
          metrics: frame.metrics,
          from,
          now,
          aheadMs: this.options.aheadMs,
          fn: frame.history?.fn,
          maxPoints: frame.history?.maxPoints ?? 1000,
        });
        if (!client.subscriptions.has(frame.id)) break; // unsubscribed meanwhile
        this.send(client, history.frame);
        if (holds.includes(device)) {
          const held = client.holds.get(device) ?? [];
          client.holds.delete(device);
          const release = readingsAfterHistory(history, client.effective(device)?.metrics, recent, held);
          for (const r of release.readings) client.carry.push(r);
          client.sent.set(device, { seen: release.seen, until: Date.now() + RECENT_MS });
        }
      } catch (err) {
        const code: ErrorCode = isSensorpipeError(err) ? err.code : 'INTERNAL';
        this.send(client, { type: 'error', code, message: `history of ${device}: ${(err as Error).message}`, id: frame.id });
        if (holds.includes(device)) {
          // Live goes on even without history; what was held is sent as it is.
          for (const r of client.holds.get(device) ?? []) client.carry.push(r);
          client.holds.delete(device);
        }
      }
    }
    for (const device of holds) {
      for (const r of client.holds.get(device) ?? []) client.carry.push(r);
      client.holds.delete(device);
    }
    client.changed();
  }

  // ---- the tick --------------------------------------------------------------------------------------------

  private tick(): void {
    const readings = this.tickReadings;
    this.tickReadings = new Map();
    const now = Date.now();
    let fragments: Map<string, string> | undefined;
    let wholeFleetFrame: string | undefined;
    const fragmentOf = (device: string): string => {
      fragments ??= new Map();
      let fragment = fragments.get(device);
      if (fragment === undefined) {
        fragment = readings.get(device)!.map((r) => JSON.stringify(r)).join(',');
        fragments.set(device, fragment);
      }
      return fragment;
    };
    let totalReadings = 0;
    for (const list of readings.values()) totalReadings += list.length;

    for (const client of this.clients) {
      if (client.ws.readyState !== client.ws.OPEN) continue;
      if (client.statuses.size > 0) {
        for (const frame of client.statuses.values()) this.send(client, frame);
        client.statuses.clear();
      }
      const slow = client.ws.bufferedAmount > this.options.slowBytes;
      if (slow) {
        client.slowSince ??= now;
        if (now - client.slowSince > this.options.stuckMs) {
          this.disconnect(client, 'slow', LIVE_CLOSE.slow, 'too slow: frames were not read');
          continue;
        }
      } else client.slowSince = undefined;

      if (client.simple && !slow && client.merged.size === 0 && client.carry.length === 0) {
        if (readings.size === 0) continue;
        if (client.wildcard) {
          wholeFleetFrame ??= `{"type":"readings","items":[${[...readings.keys()].map(fragmentOf).join(',')}]}`;
          this.sendRaw(client, wholeFleetFrame, totalReadings);
        } else {
          const parts: string[] = [];
          let count = 0;
          const mine = client.explicitDevices();
          // Walk the smaller side: a viewer of one device, or a tick with few devices.
          const candidates = mine.size < readings.size ? mine : readings.keys();
          for (const device of candidates) {
            const list = readings.get(device);
            if (list === undefined || !mine.has(device)) continue;
            parts.push(fragmentOf(device));
            count += list.length;
          }
          if (parts.length > 0) this.sendRaw(client, `{"type":"readings","items":[${parts.join(',')}]}`, count);
        }
        continue;
      }
      this.tickOne(client, readings, slow);
    }
  }

  /** The general path: filters, holds, `latest` subscriptions and conflation. */
  private tickOne(client: LiveClient, readings: Map<string, LiveReading[]>, slow: boolean): void {
    const items: LiveReading[] = client.carry;
    client.carry = [];
    const now = Date.now();
    for (const [device, sent] of client.sent) {
      if (sent.until < now) {
        client.sent.delete(device);
        client.changed();
      }
    }
    for (const [device, list] of readings) {
      const effective = client.effective(device);
      if (effective === null) continue;
      const held = client.holds.get(device);
      const seen = client.sent.get(device)?.seen;
      for (const reading of list) {
        let filtered = filterValues(reading, effective.metrics);
        if (filtered !== undefined && seen !== undefined) filtered = unseen(filtered, seen);
        if (filtered === undefined) continue;
        if (held !== undefined) held.push(filtered);
        else if (effective.latest) this.conflate(client, filtered, false);
        else items.push(filtered);
      }
    }
    if (slow) {
      for (const reading of items) this.conflate(client, reading, true);
      return;
    }
    for (const reading of client.merged.values()) items.push(reading);
    client.merged.clear();
    if (items.length === 0) return;
    const frame: LiveServerFrame = { type: 'readings', items };
    if (client.conflated > 0) {
      frame.conflated = client.conflated;
      client.conflated = 0;
    }
    this.sendRaw(client, JSON.stringify(frame), items.length);
  }

  /** Keeps only the newest value per (device, metric); counts what a slow client loses. */
  private conflate(client: LiveClient, reading: LiveReading, countDrops: boolean): void {
    for (const metric in reading[3]) {
      const key = `${reading[0]}\u0000${metric}`;
      const previous = client.merged.get(key);
      if (previous !== undefined) {
        if (previous[2] > reading[2]) continue; // an older catch-up reading never replaces a newer value
        if (countDrops) {
          client.conflated++;
          this.options.metrics.liveConflated.inc();
        }
      }
      client.merged.set(key, [reading[0], reading[1], reading[2], { [metric]: reading[3][metric]! }]);
    }
  }

  private send(client: LiveClient, frame: LiveServerFrame): void {
    this.sendRaw(client, JSON.stringify(frame), 0);
  }

  private sendRaw(client: LiveClient, text: string, readings: number): void {
    if (client.ws.readyState !== client.ws.OPEN) return;
    client.ws.send(text);
    this.options.metrics.liveFrames.inc();
    if (readings > 0) this.options.metrics.liveDelivered.inc(readings);
  }

  private heartbeat(): void {
    for (const client of this.clients) {
      if (!client.alive) {
        // A pong stuck behind a backlog is a slow client, not a dead one: count it as what it is.
        this.disconnect(client, client.ws.bufferedAmount > this.options.slowBytes ? 'slow' : 'heartbeat');
        continue;
      }
      client.alive = false;
      client.ws.ping();
    }
  }

  private disconnect(client: LiveClient, reason: string, code?: number, text?: string): void {
    this.options.metrics.liveDisconnects.inc({ reason });
    this.clients.delete(client);
    this.options.metrics.liveClients.set(this.clients.size);
    // A stuck client cannot read a close frame either: terminate rather than wait for its handshake.
    if (code === undefined || reason === 'slow') client.ws.terminate();
    else client.ws.close(code, text);
  }

  close(): void {
    clearInterval(this.tickTimer);
    clearInterval(this.heartbeatTimer);
    clearInterval(this.pruneTimer);
    for (const client of this.clients) client.ws.close(LIVE_CLOSE.shutdown, 'server shutting down');
    this.clients.clear();
  }
}
