/**
 * Live viewers of the display's /live WebSocket, as a browser would be: each subscribes, keeps every
 * reading it is shown (live, and raw history points), and reconnects and resubscribes when the server
 * drops it. Whether what they saw was verified data is decided at the end against the store
 * (reconcile.ts); here they only collect. A viewer can be frozen: its socket stops being read, as a
 * browser tab in the background or a stalled network does.
 */
import WebSocket from 'ws';
import { LiveServerFrameSchema, type LiveClientFrame } from '../core/live.ts';

const RESUBSCRIBE_MS = 20_000;

export interface SeenReading {
  device: string;
  seq: number;
  ts: number;
  values: Record<string, number>;
}

export interface ViewerStats {
  name: string;
  connects: number;
  closes: Record<string, number>;
  frames: number;
  liveReadings: number;
  historyPoints: number;
  conflated: number;
  freezes: number;
  /** Frames that did not parse with the protocol's schema, and error frames. */
  badFrames: string[];
}

export class Viewer {
  /** Live readings seen, by `${device} ${ts}`; the values of every frame that carried that reading are merged. */
  readonly live = new Map<string, SeenReading>();
  /** Raw history points seen, by `${device} ${ts}`: values by metric. */
  readonly history = new Map<string, { device: string; ts: number; values: Record<string, number> }>();
  /** The same (device, ts) shown with another seq or another value for a metric. */
  readonly inconsistent: string[] = [];
  readonly stats: ViewerStats;
  private ws: WebSocket | undefined;
  private stopped = false;
  private frozen = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly resubscribeTimer: NodeJS.Timeout;

  constructor(
    readonly name: string,
    private readonly url: string,
    private readonly subscriptions: LiveClientFrame[],
  ) {
    this.stats = { name, connects: 0, closes: {}, frames: 0, liveReadings: 0, historyPoints: 0, conflated: 0, freezes: 0, badFrames: [] };
    // A subscription with history is made again now and then: each time, history then live again.
    this.resubscribeTimer = setInterval(() => {
      if (this.ws?.readyState !== WebSocket.OPEN || this.frozen) return;
      for (const frame of this.subscriptions) {
        if (frame.type !== 'subscribe' || frame.history === undefined) continue;
        this.ws.send(JSON.stringify({ type: 'unsubscribe', id: frame.id }));
        this.ws.send(JSON.stringify(frame));
      }
    }, RESUBSCRIBE_MS);
  }

  /** Connects and resolves once the server welcomed it. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.on('message', (data) => {
        const welcomed = this.receive(String(data));
        if (welcomed) {
          this.stats.connects++;
          for (const frame of this.subscriptions) ws.send(JSON.stringify(frame));
          resolve();
        }
      });
      ws.once('error', reject);
      ws.on('error', () => {});
      ws.once('close', (code) => {
        if (!this.stopped) this.stats.closes[String(code)] = (this.stats.closes[String(code)] ?? 0) + 1;
        reject(new Error(`${this.name}: closed (${code}) before the welcome`));
        if (!this.stopped) {
          this.reconnectTimer = setTimeout(() => {
            this.reconnectTimer = undefined;
            if (!this.stopped) this.start().catch(() => {}); // a failed attempt closes and schedules the next
          }, 1000);
        }
      });
    });
  }

  /** Stops reading the socket for `ms` (the server sees its sends back up), then reads again. */
  async freeze(ms: number): Promise<string> {
    const socket = (this.ws as unknown as { _socket?: { pause(): void; resume(): void } } | undefined)?._socket;
    if (socket === undefined || this.ws?.readyState !== WebSocket.OPEN) return `${this.name} not connected`;
    this.stats.freezes++;
    this.frozen = true;
    const connectsBefore = this.stats.connects;
    socket.pause();
    await new Promise((resolve) => setTimeout(resolve, ms));
    socket.resume();
    this.frozen = false;
    // Give a dropped viewer its reconnect, so the next strike finds it live.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    return `${this.name} frozen ${Math.round(ms / 1000)} s; ${this.ws?.readyState === WebSocket.OPEN ? 'open' : 'closed'} after, reconnected ${this.stats.connects - connectsBefore} times`;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.resubscribeTimer);
    const ws = this.ws;
    if (ws === undefined || ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    ws.terminate();
    await closed;
  }

  /** Handles one frame; true for the welcome. */
  private receive(text: string): boolean {
    this.stats.frames++;
    let frame;
    try {
      frame = LiveServerFrameSchema.parse(JSON.parse(text));
    } catch (err) {
      this.stats.badFrames.push(`unparsable: ${(err as Error).message.slice(0, 200)}`);
      return false;
    }
    switch (frame.type) {
      case 'welcome':
        return true;
      case 'error':
        this.stats.badFrames.push(`error frame ${frame.code}: ${frame.message.slice(0, 200)}`);
        return false;
      case 'readings':
        this.stats.conflated += frame.conflated ?? 0;
        for (const [device, seq, ts, values] of frame.items) {
          this.stats.liveReadings++;
          const key = `${device} ${ts}`;
          const seen = this.live.get(key);
          if (seen === undefined) {
            this.live.set(key, { device, seq, ts, values: { ...values } });
            continue;
          }
          if (seen.seq !== seq) this.inconsistent.push(`${key}: seq ${seen.seq} and ${seq}`);
          for (const [metric, value] of Object.entries(values)) {
            if (seen.values[metric] !== undefined && seen.values[metric] !== value) this.inconsistent.push(`${key} ${metric}: ${seen.values[metric]} and ${value}`);
            seen.values[metric] = value;
          }
        }
        return false;
      case 'history':
        for (const series of frame.series) {
          for (const point of series.points) {
            // Aggregated windows are not readings; raw points are (all of them in raw mode, the tail after rawFrom otherwise).
            if (point.length !== 2 || (frame.mode === 'aggregate' && (frame.rawFrom === undefined || point[0] < frame.rawFrom))) continue;
            const [ts, value] = point;
            this.stats.historyPoints++;
            const key = `${frame.device} ${ts}`;
            const entry = this.history.get(key) ?? { device: frame.device, ts, values: {} };
            entry.values[series.metric] = value;
            this.history.set(key, entry);
          }
        }
        return false;
      default:
        return false;
    }
  }
}
