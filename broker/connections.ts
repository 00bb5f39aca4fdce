/**
 * What the broker knows of each connection it hands to aedes (address and transport, from the
 * listener), and the one shape of a connection's log context, so every line about a connection or a
 * client can be found by the same fields: `{address, transport}`, plus `{client}` once aedes knows its
 * client id, plus `{device}` or `{service}` once it has logged in.
 *
 * Child loggers are made when there is something to log (a refusal, a disconnect, an error: rare), not
 * kept per connection: a pino child costs about 1 KiB and the broker holds tens of thousands of idle
 * connections.
 */
import type { Client } from 'aedes';
import type { Logger } from '../core/logger.ts';
import type { Principal } from './acl.ts';
import type { GuardedConnection } from './packet-guard.ts';

export class Connections {
  readonly #byStream = new WeakMap<object, GuardedConnection>();

  /** @param logger the broker's logger, parent of every connection's. */
  constructor(readonly logger: Logger) {}

  /** Called by the listener with the stream it hands to aedes. */
  add(stream: object, connection: GuardedConnection): void {
    this.#byStream.set(stream, connection);
  }

  of(client: Client): GuardedConnection | undefined {
    return this.#byStream.get(client.conn);
  }

  /** Where a client connects from ('unknown' for a stream no listener of ours accepted). */
  addressOf(client: Client): string {
    return this.of(client)?.address ?? 'unknown';
  }

  /** A connection before it has sent CONNECT. */
  connectionLog(connection: GuardedConnection): Logger {
    return this.logger.child({ address: connection.address, transport: connection.transport });
  }

  /** A client; with its principal once logged in. */
  clientLog(client: Client, principal?: Principal): Logger {
    const connection = this.of(client);
    const who = principal === undefined ? {} : principal.kind === 'device' ? { device: principal.deviceId } : { service: principal.service };
    return this.logger.child({ address: connection?.address ?? 'unknown', transport: connection?.transport, client: client.id, ...who });
  }
}
