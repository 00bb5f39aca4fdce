/**
 * The open `/live` clients, how many come from each address, and whether they are still there. A ping
 * goes out every heartbeat; a client that has not answered the previous one is dropped. A client whose
 * socket holds more than `slowBytes` unsent is slow: the fan-out conflates it and drops it once it has
 * been slow for `stuckMs` (that check runs inline in fan-out.ts, on every tick); a missed pong while slow
 * counts as slow too. A client the server has stopped reading from (live-protocol.ts) cannot answer a
 * ping: the slow rule judges it instead. Every drop is counted by reason, logged on the client's logger,
 * and the open-clients gauge follows the set.
 */
import { LIVE_CLOSE } from '../core/live.ts';
import type { LiveClient } from './live-client.ts';
import type { DisplayMetrics } from './metrics.ts';

export interface LivenessOptions {
  slowBytes: number;
  metrics: DisplayMetrics;
}

/** Why the server dropped a client (the `reason` label of sensorpipe_display_live_disconnects_total). */
export type DisconnectReason = 'slow' | 'heartbeat' | 'bad-frames' | 'protocol';

export class Liveness {
  readonly clients = new Set<LiveClient>();
  /** Open clients per peer address (for SENSORPIPE_LIVE_MAX_CLIENTS_PER_ADDRESS). */
  private readonly perAddress = new Map<string, number>();

  constructor(private readonly options: LivenessOptions) {}

  add(client: LiveClient): void {
    this.clients.add(client);
    if (client.address !== undefined) this.perAddress.set(client.address, this.clientsFrom(client.address) + 1);
    this.options.metrics.liveClients.set(this.clients.size);
  }

  /** The socket closed (either side), or the server dropped the client; either may come first, or both. */
  forget(client: LiveClient): void {
    if (!this.clients.delete(client)) return;
    if (client.address !== undefined) {
      const left = this.clientsFrom(client.address) - 1;
      if (left > 0) this.perAddress.set(client.address, left);
      else this.perAddress.delete(client.address);
    }
    client.inbox = undefined;
    client.releaseDrainWaiters(); // its history loads end (they find it closed)
    this.options.metrics.liveClients.set(this.clients.size);
  }

  clientsFrom(address: string): number {
    return this.perAddress.get(address) ?? 0;
  }

  /** Unsent bytes of every client together and of the most behind one (read when /metrics is scraped). */
  unsentBytes(): { total: number; max: number } {
    let total = 0;
    let max = 0;
    for (const client of this.clients) {
      const unsent = client.ws.bufferedAmount;
      total += unsent;
      if (unsent > max) max = unsent;
    }
    return { total, max };
  }

  heartbeat(): void {
    for (const client of this.clients) {
      if (client.inbox !== undefined) continue; // not read from: its pong waits unread; the slow rule applies
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
    for (const client of this.clients) {
      client.ws.close(LIVE_CLOSE.shutdown, 'server shutting down');
      client.releaseDrainWaiters();
    }
    this.clients.clear();
    this.perAddress.clear();
  }
}
