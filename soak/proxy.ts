/**
 * A TCP proxy on loopback in front of the broker, so the soak can cut connections the way a network
 * does: both sockets destroyed at once, no MQTT DISCONNECT, no FIN handshake the client could use to
 * tell a clean close. The simulator's devices (and ingest, on its own proxy) connect through one.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface CutProxy {
  port: number;
  /** Open client connections. */
  readonly connections: number;
  /** Destroys each open connection with probability `fraction` (1: all); returns how many were cut. */
  cut(fraction: number, random: () => number): number;
  close(): Promise<void>;
}

export async function startCutProxy(targetPort: number): Promise<CutProxy> {
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of pair) {
      socket.setNoDelay(true);
      socket.on('error', drop);
      socket.on('close', drop);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return pairs.size;
    },
    cut(fraction, random) {
      let cut = 0;
      for (const pair of [...pairs]) {
        if (random() >= fraction) continue;
        pairs.delete(pair);
        pair[0].destroy();
        pair[1].destroy();
        cut++;
      }
      return cut;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const [a, b] of pairs) {
          a.destroy();
          b.destroy();
        }
        pairs.clear();
        server.close(() => resolve());
      }),
  };
}
