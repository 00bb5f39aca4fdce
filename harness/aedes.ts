/**
 * A bare aedes broker on a free loopback port, with no authentication: for tests of components that
 * only need *an* MQTT broker. Tests of our own broker start `broker/` instead.
 */
import { createServer, type AddressInfo } from 'node:net';
import { Aedes, type AedesOptions } from 'aedes';

export interface BareBroker {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** `options` for hooks a test needs to misbehave with (a broker that never acknowledges, say). */
export async function startBareAedes(port = 0, options: AedesOptions = {}): Promise<BareBroker> {
  const broker = await Aedes.createBroker(options);
  const server = createServer(broker.handle);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `mqtt://127.0.0.1:${actual}`,
    port: actual,
    close: async () => {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
