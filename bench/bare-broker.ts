/**
 * A bare aedes broker (no authentication, no ACL, no limits, no durable queue) in its own process: the
 * baseline our broker is compared with, and a stand-in broker for benches that measure something else.
 * Prints {"port": N} on stdout once listening.
 *
 * By default it has our broker's transport settings, so that a comparison measures what our broker adds
 * (logins, ACL, packet guard, token bucket, status, durable queue) and not how it moves bytes: TCP_NODELAY,
 * packets written in one turn of the event loop leaving in one system call (broker/coalesce-writes.ts),
 * and the indexed in-memory persistence (broker/indexed-persistence.ts) that our broker uses without
 * Redis. `--stock` gives a stock aedes instead (its default persistence, no coalescing, Nagle on).
 *
 *   node --import tsx bench/bare-broker.ts [port] [--stock]
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes, type AedesOptions } from 'aedes';
import { coalesceWrites } from '../broker/coalesce-writes.ts';
import { createIndexedMemoryPersistenceAsync } from '../broker/indexed-persistence.ts';

const stock = process.argv.includes('--stock');
const broker = await Aedes.createBroker(stock ? {} : { persistence: createIndexedMemoryPersistenceAsync() as AedesOptions['persistence'] });
const server = createServer((socket: Socket) => {
  socket.on('error', () => {}); // a reset is reported through the stream; it must not crash the process
  if (!stock) {
    socket.setNoDelay(true);
    coalesceWrites(socket);
  }
  broker.handle(socket);
});
server.listen(Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => broker.close(() => server.close(() => process.exit(0))));
