/**
 * A bare aedes broker (no authentication, no ACL, no limits) in its own process: the baseline our
 * broker is compared with, and a stand-in broker for benches that measure something else.
 * Prints {"port": N} on stdout once listening.
 *
 *   node --import tsx bench/bare-broker.ts [port] [--indexed]   (--indexed: broker/indexed-persistence.ts)
 */
import { createServer, type AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import { indexedMemoryPersistence } from '../broker/indexed-persistence.ts';

const indexed = process.argv.includes('--indexed');
const broker = await Aedes.createBroker(indexed ? { persistence: indexedMemoryPersistence() as never } : {});
const server = createServer(broker.handle);
server.listen(Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => broker.close(() => server.close(() => process.exit(0))));
