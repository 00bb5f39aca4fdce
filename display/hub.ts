/**
 * The live hub behind `/live`: accepts WebSocket clients and wires the pieces together.
 *
 *   live-client.ts    one client's state: subscriptions, holds, conflated values
 *   live-protocol.ts  what clients send: subscribe/unsubscribe, limits, history then live
 *   fan-out.ts        one frame per client per tick, shared fragments, conflation of slow clients
 *   liveness.ts       the open clients, heartbeats, and disconnects by reason
 *
 * Readings arrive from the pipeline feed (publishReadings) and are sent on the next tick; status
 * changes (publishStatus) go to the clients that subscribed to the device, on the next tick too.
 * Every frame a client is sent counts towards its backlog (`slowBytes`): over it, the client gets
 * conflated readings, no new answers (the server stops reading its frames) and no history, until it
 * drains or is dropped as slow.
 */
import type { WebSocket } from 'ws';
import type { LiveReading, LiveServerFrame } from '../core/live.ts';
import type { Logger } from '../core/logger.ts';
import type { StatusMessage, VerifiedReadings } from '../core/schemas.ts';
import type { TimeSeriesStore } from '../store/index.ts';
import { FanOut } from './fan-out.ts';
import type { HistoryGate } from './history-gate.ts';
import { RecentReadings } from './history.ts';
import { LiveClient } from './live-client.ts';
import { LiveProtocol } from './live-protocol.ts';
import { Liveness } from './liveness.ts';
import type { DisplayMetrics } from './metrics.ts';

export interface HubOptions {
  tickMs: number;
  slowBytes: number;
  stuckMs: number;
  heartbeatMs: number;
  /** ingest's max-future: readings up to this far ahead are part of history. */
  aheadMs: number;
  store: TimeSeriesStore;
  /** The fleet-wide bound on history loads, shared with the HTTP API. */
  history: HistoryGate;
  metrics: DisplayMetrics;
  logger: Logger;
  /** Current status of a device, sent when a subscription names it. */
  statusOf(device: string): Pick<StatusMessage, 'state' | 'since'> | undefined;
  /** Whether a device is registered: only a registered device's history is loaded (as on the API). */
  isRegistered(device: string): boolean;
}

export class LiveHub {
  private readonly recent = new RecentReadings();
  private readonly liveness: Liveness;
  private readonly fanOut: FanOut;
  private readonly protocol: LiveProtocol;
  private readonly timers: NodeJS.Timeout[];
  /** Numbers clients for their loggers. */
  private clientSeq = 0;

  constructor(private readonly options: HubOptions) {
    const { metrics } = options;
    this.liveness = new Liveness({ slowBytes: options.slowBytes, metrics });
    this.fanOut = new FanOut(this.liveness, { slowBytes: options.slowBytes, stuckMs: options.stuckMs, metrics, drained: (client) => this.drained(client) });
    this.protocol = new LiveProtocol({ ...options, recent: this.recent, liveness: this.liveness });
    metrics.live.unsentBytes = () => this.liveness.unsentBytes();
    this.timers = [
      setInterval(() => this.fanOut.tick(), options.tickMs),
      setInterval(() => this.liveness.heartbeat(), options.heartbeatMs),
      setInterval(() => this.recent.prune(Date.now()), 10_000),
    ];
    for (const timer of this.timers) timer.unref();
  }

  get clientCount(): number {
    return this.liveness.clients.size;
  }

  /** Open clients from one peer address. */
  clientsFrom(address: string): number {
    return this.liveness.clientsFrom(address);
  }

  // ---- from the pipeline --------------------------------------------------------------------------------

  publishReadings(message: VerifiedReadings): void {
    // A broker-authenticated device's readings keep their mark all the way to the browser.
    const readings: LiveReading[] = message.trust === undefined ? message.readings.map((r) => [message.device, r.seq, r.ts, r.values]) : message.readings.map((r) => [message.device, r.seq, r.ts, r.values, 'broker']);
    this.recent.add(message.device, readings, Date.now());
    this.fanOut.add(message.device, readings);
  }

  publishStatus(message: StatusMessage): void {
    const frame: LiveServerFrame = { type: 'status', device: message.device, state: message.state, since: message.since };
    for (const client of this.liveness.clients) if (client.effective(message.device) !== null) client.statuses.set(message.device, frame);
  }

  // ---- clients -------------------------------------------------------------------------------------------

  /** Takes a client whose upgrade was admitted; `address` (the peer's) names it in logs. */
  accept(ws: WebSocket, address?: string): void {
    const log = this.options.logger.child({ client: ++this.clientSeq, ...(address === undefined ? {} : { address }) });
    const client = new LiveClient(ws, log, this.options.metrics, address);
    this.liveness.add(client);
    log.debug('live client connected');
    ws.on('pong', () => (client.alive = true));
    ws.on('message', (data, isBinary) => this.protocol.receive(client, data as Buffer, isBinary));
    ws.on('close', (code) => {
      this.liveness.forget(client);
      log.debug({ code }, 'live client closed');
    });
    ws.on('error', (err: Error & { code?: string }) => {
      // ws closes the connection itself on a frame that breaks the protocol or a limit (too big: 1009,
      // too many fragments: 1008, not UTF-8: 1007, …): a hostile input, counted as the server's drop.
      if (err.code?.startsWith('WS_ERR_') === true) this.options.metrics.liveDisconnects.inc({ reason: 'protocol' });
      log.debug({ err: err.message, code: err.code }, 'live client error');
    });
    this.protocol.welcome(client);
  }

  /** A slow client is under the mark again: its history loads and the frames it sent meanwhile go on. */
  private drained(client: LiveClient): void {
    client.slowSince = undefined;
    client.releaseDrainWaiters();
    this.protocol.resume(client);
  }

  close(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.liveness.closeAll();
  }
}
