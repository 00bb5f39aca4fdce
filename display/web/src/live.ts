/**
 * The WebSocket client for /live (core/live.ts). It keeps one connection open, reconnects by itself
 * with exponential backoff and jitter, and sends every active subscription again on each new
 * connection, so views subscribe once and never see the reconnects (except through `onReconnected`,
 * to catch up on what they missed while it was down).
 */
import { liveSubprotocols } from '../../../core/live-subprotocol.ts';
import type { LiveServerFrame, LiveSubscribe } from '../../../core/live.ts';
import { parseServerFrame } from './frames.ts';
import { getToken } from './token.ts';

export type ConnectionState =
  | { kind: 'connecting' }
  | { kind: 'live' }
  | { kind: 'reconnecting'; retryAt: number }
  /** The server refused the token: waiting for the user, no retries until then. */
  | { kind: 'token' };

/** RFC 6455 §7.4.1: 1008 is a policy violation, which a server may close with for a bad token. */
const CLOSE_POLICY = 1008;

export const BACKOFF = {
  initialMs: 500,
  maxMs: 30_000,
  /** A connection that stayed up this long was healthy: the next failure starts the backoff afresh. */
  healthyAfterMs: 10_000,
  /** A socket still not open after this long is given up and retried (a silently dropped SYN). */
  connectTimeoutMs: 10_000,
} as const;

/**
 * Delay before reconnect attempt `attempt` (0-based): doubling up to the cap, then a random share of
 * it ("equal jitter"), so a thousand dashboards cut off together do not return in one burst.
 */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF.maxMs, BACKOFF.initialMs * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** The /live URL; the token travels as a subprotocol (core/live.ts), never in the URL. */
export function liveUrl(): string {
  const url = new URL('live', document.baseURI);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

type Listener<T> = (value: T) => void;

export interface LiveClientOptions {
  /** Asked when a connection fails before it opens: true when the cause is the token (see api.ts). */
  tokenRefused(): Promise<boolean>;
}

export class LiveClient {
  private socket: WebSocket | null = null;
  private readonly subscriptions = new Map<string, LiveSubscribe>();
  private attempt = 0;
  private connections = 0;
  private openedAt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private currentState: ConnectionState = { kind: 'connecting' };
  private serverOffset = 0;
  private readonly frameListeners = new Set<Listener<LiveServerFrame>>();
  private readonly stateListeners = new Set<Listener<ConnectionState>>();
  private readonly reconnectListeners = new Set<Listener<void>>();

  constructor(private readonly options: LiveClientOptions) {}

  get state(): ConnectionState {
    return this.currentState;
  }

  /** The server's clock minus ours (ms), from its welcome: charts end at the server's "now". */
  get clockOffset(): number {
    return this.serverOffset;
  }

  start(): void {
    window.addEventListener('online', () => {
      // The network is back: waiting out the backoff would only delay the user.
      if (this.currentState.kind === 'reconnecting') this.connectNow();
    });
    this.connect();
  }

  /** Reconnects at once, e.g. with a token the user just entered. */
  connectNow(): void {
    this.clearTimers();
    if (this.socket !== null) {
      const old = this.socket;
      this.socket = null;
      old.onclose = null;
      old.close(1000);
    }
    this.attempt = 0;
    this.connect();
  }

  subscribe(frame: LiveSubscribe): void {
    this.subscriptions.set(frame.id, frame);
    this.send(frame);
  }

  unsubscribe(id: string): void {
    if (this.subscriptions.delete(id)) this.send({ type: 'unsubscribe', id });
  }

  onFrame(listener: Listener<LiveServerFrame>): () => void {
    this.frameListeners.add(listener);
    return () => this.frameListeners.delete(listener);
  }

  onState(listener: Listener<ConnectionState>): () => void {
    this.stateListeners.add(listener);
    listener(this.currentState);
    return () => this.stateListeners.delete(listener);
  }

  /** After a reconnect (not the first connection): frames sent while it was down are lost. */
  onReconnected(listener: Listener<void>): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  private setState(state: ConnectionState): void {
    this.currentState = state;
    for (const listener of this.stateListeners) listener(state);
  }

  private send(frame: object): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
  }

  private connect(): void {
    this.setState({ kind: 'connecting' });
    const socket = new WebSocket(liveUrl(), liveSubprotocols(getToken()));
    this.socket = socket;
    this.connectTimer = setTimeout(() => socket.close(), BACKOFF.connectTimeoutMs);
    socket.onopen = () => {
      if (this.connectTimer !== null) clearTimeout(this.connectTimer);
      this.openedAt = Date.now();
      for (const frame of this.subscriptions.values()) this.send(frame);
    };
    socket.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== 'string') return;
      const frame = parseServerFrame(event.data);
      if (frame === null) {
        console.warn('sensorpipe: dropped a frame that does not match the protocol', event.data.slice(0, 200));
        return;
      }
      if (frame.type === 'welcome') this.welcomed(frame.serverTime);
      for (const listener of this.frameListeners) listener(frame);
    };
    socket.onclose = (event: CloseEvent) => this.closed(socket, event.code);
  }

  private welcomed(serverTime: number): void {
    this.serverOffset = serverTime - Date.now();
    this.connections += 1;
    this.setState({ kind: 'live' });
    if (this.connections > 1) for (const listener of this.reconnectListeners) listener();
  }

  private closed(socket: WebSocket, code: number): void {
    if (socket !== this.socket) return;
    this.clearTimers();
    this.socket = null;
    if (code === CLOSE_POLICY) return this.needToken();
    const neverOpened = this.openedAt === 0;
    if (!neverOpened && Date.now() - this.openedAt >= BACKOFF.healthyAfterMs) this.attempt = 0;
    this.openedAt = 0;
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.setState({ kind: 'reconnecting', retryAt: Date.now() + delay });
    this.retryTimer = setTimeout(() => this.connect(), delay);
    if (neverOpened) {
      void this.options.tokenRefused().then((refused) => {
        // Only if nothing moved on meanwhile (no new socket, no token entered).
        if (refused && this.socket === null && this.currentState.kind === 'reconnecting') this.needToken();
      });
    }
  }

  private needToken(): void {
    this.clearTimers();
    this.setState({ kind: 'token' });
  }

  private clearTimers(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.retryTimer = null;
    this.connectTimer = null;
  }
}
