/**
 * Device presence: which devices are online, since when, and when each was last heard from; the
 * retained status message on sensors/{id}/status that tells subscribers (display, alerts) of every
 * change, with the reason a device went offline; and applying a new registry to connected devices (a
 * revoked, removed or rotated device is disconnected).
 *
 * `Presence` is the state, without aedes. `trackDeviceStatus` keeps it from aedes' events and publishes
 * the status messages.
 */
import type { Aedes, Client } from 'aedes';
import type { DeviceRecord, Registry } from '../core/registry.ts';
import { PROTOCOL_VERSION, type StatusMessage } from '../core/schemas.ts';
import { topics } from '../core/topics.ts';
import type { Principal } from './acl.ts';
import type { Connections } from './connections.ts';
import type { BrokerMetrics } from './metrics.ts';

export type StatusReason = NonNullable<StatusMessage['reason']>;

export interface DeviceState {
  state: 'online' | 'offline';
  since: number;
  lastSeen: number;
}

/** Online/offline per device, and why a connection is ending. `C` is a connection (aedes' Client). */
export class Presence<C extends object = Client> {
  /** The current connection of each online device. */
  readonly #current = new Map<string, C>();
  readonly #states = new Map<string, DeviceState>();
  /** Why the broker is ending a connection, when it knows better than the socket does. */
  readonly #endings = new WeakMap<C, StatusReason>();

  get onlineCount(): number {
    return this.#current.size;
  }

  /** `connection` is now the device's connection (a newer one replaces an older one). */
  connected(deviceId: string, connection: C, now: number): void {
    this.#current.set(deviceId, connection);
    this.#states.set(deviceId, { state: 'online', since: now, lastSeen: now });
  }

  /** The broker is ending `connection` (or aedes timed it out) for `reason`. */
  ending(connection: C, reason: StatusReason): void {
    this.#endings.set(connection, reason);
  }

  /**
   * `connection` closed; `cleanDisconnect` when the client sent DISCONNECT. Returns the reason the
   * device is offline, or undefined when the connection was not the device's current one (it was
   * replaced by a newer connection, and the device is still online).
   */
  disconnected(deviceId: string, connection: C, now: number, cleanDisconnect: boolean): StatusReason | undefined {
    if (this.#current.get(deviceId) !== connection) return undefined;
    this.#current.delete(deviceId);
    this.#states.set(deviceId, { state: 'offline', since: now, lastSeen: now });
    return this.#endings.get(connection) ?? (cleanDisconnect ? 'clean' : 'socket');
  }

  /** A device was heard from (every PUBLISH: no allocation here). */
  seen(deviceId: string, now: number): void {
    const state = this.#states.get(deviceId);
    if (state) state.lastSeen = now;
  }

  /** A copy of the device's state; undefined when it was never seen. */
  state(deviceId: string): DeviceState | undefined {
    const state = this.#states.get(deviceId);
    return state && { ...state };
  }

  /** Every device seen since start, and whether it is online now (for /metrics). */
  *devices(): IterableIterator<readonly [string, boolean]> {
    for (const [device, state] of this.#states) yield [device, state.state === 'online'];
  }

  /** The online devices and their connections. */
  online(): IterableIterator<[string, C]> {
    return this.#current.entries();
  }
}

/** False when a device's connection must go: its record is gone, revoked, or has other credentials. */
export function stillAuthorized(principal: Principal | undefined, record: DeviceRecord | undefined): boolean {
  return record !== undefined && record.status === 'active' && principal?.kind === 'device' && principal.verifier === record.mqtt.hash;
}

export interface DeviceStatus {
  /** Disconnects every online device that `next` no longer lets in as it logged in (reason "revoked"). */
  applyRegistry(next: Registry): void;
  /** Publishes every online device offline (reason "shutdown"), before the broker closes their connections. */
  announceShutdown(): Promise<void>;
}

export interface DeviceStatusOptions {
  principalOf(client: Client): Principal | undefined;
  metrics: BrokerMetrics;
  connections: Connections;
  now?: () => number;
}

/** Keeps `presence` from aedes' events and publishes each device's status, retained, at QoS 1. */
export function trackDeviceStatus(aedes: Aedes, presence: Presence, options: DeviceStatusOptions): DeviceStatus {
  const { principalOf, metrics, connections } = options;
  const now = options.now ?? Date.now;

  const publishStatus = (deviceId: string, state: DeviceState['state'], reason: StatusReason, since: number): Promise<void> => {
    const message: StatusMessage = { v: PROTOCOL_VERSION, device: deviceId, state, since, reason };
    return new Promise((resolve) => {
      aedes.publish({ cmd: 'publish', topic: topics.status(deviceId), payload: Buffer.from(JSON.stringify(message)), qos: 1, retain: true, dup: false }, (err) => {
        if (err) connections.logger.warn({ err, device: deviceId }, 'status publish failed');
        resolve();
      });
    });
  };

  aedes.on('clientReady', (client) => {
    const principal = principalOf(client);
    if (principal?.kind !== 'device') return;
    const at = now();
    presence.connected(principal.deviceId, client, at);
    void publishStatus(principal.deviceId, 'online', 'connected', at);
  });
  aedes.on('keepaliveTimeout', (client) => presence.ending(client, 'keepalive'));
  aedes.on('clientDisconnect', (client) => {
    const principal = principalOf(client);
    if (principal?.kind !== 'device') return;
    const at = now();
    // aedes sets _disconnected only when the client sent a DISCONNECT packet.
    const reason = presence.disconnected(principal.deviceId, client, at, (client as unknown as { _disconnected?: boolean })._disconnected === true);
    // While aedes closes, every device was announced offline (shutdown) already, and its emitter is closed.
    if (reason !== undefined && !(aedes as unknown as { closed: boolean }).closed) void publishStatus(principal.deviceId, 'offline', reason, at);
  });

  return {
    applyRegistry(next) {
      for (const [deviceId, client] of presence.online()) {
        const record = next.get(deviceId);
        const principal = principalOf(client);
        if (stillAuthorized(principal, record)) continue;
        connections.clientLog(client, principal).info({ status: record?.status ?? 'removed' }, 'disconnecting device: revoked, removed or credentials rotated');
        metrics.dropped('revoked_disconnect');
        presence.ending(client, 'revoked');
        client.close();
      }
    },
    async announceShutdown() {
      // Devices are told offline (retained) before their connections go, so subscribers see why.
      const at = now();
      await Promise.all([...presence.online()].map(([deviceId, client]) => {
        presence.ending(client, 'shutdown');
        return publishStatus(deviceId, 'offline', 'shutdown', at);
      }));
    },
  };
}
