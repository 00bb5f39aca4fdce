/**
 * The open `/live` clients and whether they are still there. A ping goes out every heartbeat; a client
 * that has not answered the previous one is dropped. A client whose socket holds more than `slowBytes`
 * unsent is slow: the fan-out conflates it and drops it once it has been slow for `stuckMs` (that check
 * runs inline in fan-out.ts, on every tick); a missed pong while slow counts as slow too. Every drop is
 * counted by reason, logged on the client's logger, and the open-clients gauge follows the set.
 */
import { LIVE_CLOSE } from '../core/live.ts';
import type { LiveClient } from './live-client.ts';
import type { DisplayMetrics } from './metrics.ts';

export interface LivenessOptions {
  slowBytes: number;
  metrics: DisplayMetrics;
}

/** Why the server dropped a client (the `reason` label of sensorpipe_display_live_disconnects_total). */
export type DisconnectReason = 'slow' | 'heartbeat' | 'bad-frames';

export class Liveness {
  readonly clients = new Set<LiveClient>();

  constructor(private readonly options: LivenessOptions) {}

  add(client: LiveClient): void {
    this.clients.add(client);
    this.options.metrics.liveClients.set(this.clients.size);
  }

  /** The socket closed (either side). */
  forget(client: LiveClient): void {
    this.clients.delete(client);
    this.options.metrics.liveClients.set(this.clients.size);
  }

  heartbeat(): void {
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

  disconnect(client: LiveClient, reason: DisconnectReason, code?: number, text?: string): void {
    this.options.metrics.liveDisconnects.inc({ reason });
    this.forget(client);
    client.log.info({ reason }, 'live client disconnected');
    // A stuck client cannot read a close frame either: terminate rather than wait for its handshake.
    if (code === undefined || reason === 'slow') client.ws.terminate();
    else client.ws.close(code, text);
  }

  /** Closes every client (the display is shutting down). */
  closeAll(): void {
    for (const client of this.clients) client.ws.close(LIVE_CLOSE.shutdown, 'server shutting down');
    this.clients.clear();
  }
}
