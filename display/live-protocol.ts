/**
 * What `/live` clients send, and what the server answers: the welcome, then `subscribe` and
 * `unsubscribe` frames parsed with their core/live.ts schemas, within the per-client limits. A
 * subscription that asks for history holds its devices' live readings back, loads each device's history
 * (one client's loads run one after another), sends it, and then releases what it held, without the
 * readings the history already had (display/history.ts). A refused frame gets an `error` frame with its
 * code; too many of them and the client is dropped.
 *
 * Backpressure: every answer (acks, errors, statuses, histories) is bounded by the client's reading.
 * While the client has more than `slowBytes` unsent, or MAX_HISTORY_QUEUE history loads queued, the
 * server stops reading from it (its frames wait, in order, in its own socket) and takes them up again
 * once it drained (the fan-out notices, see `resume`) or a load finished. Each device's history is
 * loaded only once the client is under the mark, so a client holds at most `slowBytes` plus one frame
 * unsent, whatever it asks for; one that stays over the mark is dropped as `slow` (fan-out.ts).
 */
import { everyMemberKept } from '../core/decode.ts';
import { SensorpipeError, isSensorpipeError, type ErrorCode } from '../core/errors.ts';
import {
  LIVE_CLOSE,
  LIVE_LIMITS,
  LIVE_PROTOCOL_VERSION,
  LiveClientFrameSchema,
  parseSubscriptionHistory,
  type LiveHistoryRequest,
  type LiveSubscribe,
} from '../core/live.ts';
import type { StatusMessage } from '../core/schemas.ts';
import type { TimeSeriesStore } from '../store/index.ts';
import type { HistoryGate } from './history-gate.ts';
import { RECENT_MS, loadHistory, readingsAfterHistory, type RecentReadings } from './history.ts';
import { MAX_HISTORY_QUEUE, type InboundFrame, type LiveClient, type Subscription } from './live-client.ts';
import type { Liveness } from './liveness.ts';
import type { DisplayMetrics } from './metrics.ts';

/** Bad frames a client may send before it is disconnected. */
const MAX_BAD_FRAMES = 10;

export interface LiveProtocolOptions {
  tickMs: number;
  /** A client with more than this unsent is over the mark: nothing more is read from it or loaded for it. */
  slowBytes: number;
  /** ingest's max-future: readings up to this far ahead are part of history. */
  aheadMs: number;
  store: TimeSeriesStore;
  /** The fleet-wide bound on history loads, shared with the HTTP API. */
  history: HistoryGate;
  metrics: DisplayMetrics;
  /** Verified readings of the last seconds, for the join of history and live. */
  recent: RecentReadings;
  liveness: Liveness;
  /** Current status of a device, sent when a subscription names it. */
  statusOf(device: string): Pick<StatusMessage, 'state' | 'since'> | undefined;
  /** Whether a device is registered: only a registered device's history is loaded (as on the API). */
  isRegistered(device: string): boolean;
}

export class LiveProtocol {
  constructor(private readonly options: LiveProtocolOptions) {}

  welcome(client: LiveClient): void {
    client.send({
      type: 'welcome',
      v: LIVE_PROTOCOL_VERSION,
      serverTime: Date.now(),
      tickMs: this.options.tickMs,
      limits: {
        maxSubscriptions: LIVE_LIMITS.maxSubscriptionsPerClient,
        maxDevicesPerSubscription: LIVE_LIMITS.maxDevicesPerSubscription,
        maxDevicesPerClient: LIVE_LIMITS.maxDevicesPerClient,
        maxHistoryDevices: LIVE_LIMITS.maxHistoryDevices,
      },
    });
  }

  /** A frame from the client: handled now, or kept (in order) until the client may be answered again. */
  receive(client: LiveClient, data: Buffer, isBinary: boolean): void {
    const frame: InboundFrame = { data, isBinary };
    if (client.inbox === undefined && this.take(client, frame)) return;
    // Frames the socket had already read arrive after the pause too: they wait behind this one.
    (client.inbox ??= []).push(frame);
    client.ws.pause();
  }

  /** The client drained, or one of its history loads finished: takes up the frames that waited, in order. */
  resume(client: LiveClient): void {
    const inbox = client.inbox;
    if (inbox === undefined) return;
    while (inbox.length > 0 && client.ws.readyState === client.ws.OPEN && this.take(client, inbox[0]!)) inbox.shift();
    if (client.ws.readyState !== client.ws.OPEN) {
      client.inbox = undefined; // gone: nothing will be answered
      return;
    }
    if (inbox.length > 0) return;
    client.inbox = undefined;
    client.alive = true; // a pong it sent while not read from is no reason to drop it at the next heartbeat
    client.ws.resume();
  }

  /** Handles a frame, unless the client is over the mark or its history queue is full (then false, nothing done). */
  private take(client: LiveClient, frame: InboundFrame): boolean {
    if (this.overMark(client)) return false;
    return this.handle(client, frame.data, frame.isBinary);
  }

  /** Over the mark: marks the client slow (the fan-out drops it if it stays so, and resumes it once it drained). */
  private overMark(client: LiveClient): boolean {
    if (client.ws.bufferedAmount <= this.options.slowBytes) return false;
    client.slowSince ??= Date.now();
    return true;
  }

  /** Resolves once the client is under the mark, or gone. */
  private async drained(client: LiveClient): Promise<void> {
    if (client.ws.readyState === client.ws.OPEN && this.overMark(client)) await client.waitForDrain();
  }

  /** False only for a history request that must wait for a free place in the client's history queue. */
  private handle(client: LiveClient, data: Buffer, isBinary: boolean): boolean {
    let id: string | undefined;
    try {
      if (isBinary) throw new SensorpipeError('PAYLOAD_INVALID', 'frames are JSON text');
      const text = data.toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new SensorpipeError('PAYLOAD_INVALID', 'a frame is one JSON object');
      }
      if (typeof json === 'object' && json !== null && typeof (json as { id?: unknown }).id === 'string') id = (json as { id: string }).id.slice(0, 32);
      const parsed = LiveClientFrameSchema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new SensorpipeError('PAYLOAD_INVALID', `${issue?.path.join('.') || 'frame'}: ${issue?.message ?? 'invalid'}`);
      }
      // A key given twice (JSON.parse keeps the last silently) is refused as in an MQTT payload
      // (core/decode.ts): the frame means one thing to every reader. __proto__ the strict schema refuses.
      if (!everyMemberKept(text, parsed.data)) throw new SensorpipeError('PAYLOAD_INVALID', 'frame: a key is given more than once');
      const frame = parsed.data;
      if (frame.type === 'subscribe') return this.subscribe(client, frame);
      else if (client.subscriptions.delete(frame.id)) {
        client.changed();
        client.send({ type: 'unsubscribed', id: frame.id });
      } else throw new SensorpipeError('NOT_FOUND', `no subscription ${frame.id}`);
    } catch (err) {
      const code: ErrorCode = isSensorpipeError(err) ? err.code : 'INTERNAL';
      this.options.metrics.liveBadFrames.inc({ code });
      client.log.debug({ code, id }, 'live frame refused');
      client.send({ type: 'error', code, message: (err as Error).message, ...(id === undefined ? {} : { id }) });
      if (++client.badFrames >= MAX_BAD_FRAMES) this.options.liveness.disconnect(client, 'bad-frames', LIVE_CLOSE.badFrames, 'too many bad frames');
    }
    return true;
  }

  /** False, with nothing changed, when it asks for history and MAX_HISTORY_QUEUE loads are queued already. */
  private subscribe(client: LiveClient, frame: LiveSubscribe): boolean {
    if (!client.subscriptions.has(frame.id) && client.subscriptions.size >= LIVE_LIMITS.maxSubscriptionsPerClient) {
      throw new SensorpipeError('LIMIT_EXCEEDED', `at most ${LIVE_LIMITS.maxSubscriptionsPerClient} subscriptions per client`);
    }
    const now = Date.now();
    const history = parseSubscriptionHistory(frame, now);
    const devices = frame.devices === '*' ? '*' : new Set(frame.devices);
    if (devices !== '*') {
      // Every name a client subscribes to is kept for it: bounded per client, not only per subscription.
      let named = devices.size;
      for (const [id, other] of client.subscriptions) if (id !== frame.id && other.devices !== '*') named += other.devices.size;
      if (named > LIVE_LIMITS.maxDevicesPerClient) throw new SensorpipeError('LIMIT_EXCEEDED', `at most ${LIVE_LIMITS.maxDevicesPerClient} devices named by one client's subscriptions together (use "*" for the whole fleet)`);
    }
    const subscription: Subscription = { devices, metrics: frame.metrics === undefined ? undefined : new Set(frame.metrics), latest: frame.latest === true };
    if (history !== undefined) {
      if (client.historyQueue >= MAX_HISTORY_QUEUE) return false;
      const holds = history.devices.filter((d) => !client.holds.has(d));
      for (const device of holds) client.holds.set(device, []);
      client.queueHistory(
        () => this.sendHistory(client, frame, history, holds, now),
        () => this.resume(client),
      );
    }
    client.subscriptions.set(frame.id, subscription);
    client.changed();
    client.send({ type: 'subscribed', id: frame.id, devices: devices === '*' ? '*' : devices.size });
    if (devices !== '*') {
      for (const device of devices) {
        const status = this.options.statusOf(device);
        if (status !== undefined) client.statuses.set(device, { type: 'status', device, state: status.state, since: status.since });
      }
    }
    return true;
  }

  /** Sends each device's history, then releases its held live readings without those the history had. */
  private async sendHistory(client: LiveClient, frame: LiveSubscribe, history: LiveHistoryRequest, holds: string[], now: number): Promise<void> {
    for (const device of history.devices) {
      // Loaded only once the client has read what it was sent: its backlog stays within the mark plus this frame.
      await this.drained(client);
      if (client.ws.readyState !== client.ws.OPEN) break; // gone (the fan-out dropped it if it stayed slow)
      const recent = this.options.recent.snapshot(device);
      try {
        // As GET /api/devices/{id}/readings answers 404 before it asks the store: a list of made-up ids
        // costs the store nothing. Live readings of the id (should it be registered later) still come.
        if (!this.options.isRegistered(device)) throw new SensorpipeError('NOT_FOUND', `no device ${device}`);
        // One slot of the fleet-wide bound per device; over it, this device's history is refused
        // (SERVER_BUSY) and its live readings go on.
        const loaded = await this.options.history.run('live', async () =>
          client.ws.readyState !== client.ws.OPEN || !client.subscriptions.has(frame.id)
            ? undefined // gone, or unsubscribed, while it waited for a slot
            : loadHistory(this.options.store, {
                id: frame.id,
                device,
                metrics: frame.metrics,
                from: history.from,
                now,
                aheadMs: this.options.aheadMs,
                fn: history.fn,
                maxPoints: history.maxPoints,
              }),
        );
        if (loaded === undefined || !client.subscriptions.has(frame.id)) break; // gone, or unsubscribed meanwhile
        client.send(loaded.frame);
        if (holds.includes(device)) {
          const held = client.holds.get(device) ?? [];
          client.holds.delete(device);
          const release = readingsAfterHistory(loaded, client.effective(device)?.metrics, recent, held);
          for (const r of release.readings) client.carry.push(r);
          client.rememberSent(device, release.seen, Date.now() + RECENT_MS);
        }
      } catch (err) {
        const code: ErrorCode = isSensorpipeError(err) ? err.code : 'INTERNAL';
        // A store that is down or failing is the operator's concern; a refused range is the client's.
        // A busy display is counted (sensorpipe_display_history_refused_total), not logged per load.
        const retry = !isSensorpipeError(err) || (err.disposition === 'retry' && err.code !== 'SERVER_BUSY');
        client.log[retry ? 'warn' : 'debug']({ device, code, err: (err as Error).message }, 'history not loaded');
        client.send({ type: 'error', code, message: `history of ${device}: ${(err as Error).message}`, id: frame.id });
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
}
