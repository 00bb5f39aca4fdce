/**
 * One shape for a connection's log context (broker/connections.ts): address and transport, then the
 * client id, then the device or service it logged in as.
 */
import type { Client } from 'aedes';
import { describe, expect, it } from 'vitest';
import type { Principal } from '../../broker/acl.ts';
import { Connections } from '../../broker/connections.ts';
import { captureLogger } from './helpers.ts';

describe('Connections', () => {
  const stream = {};
  const client = { id: 'dev-a', conn: stream } as unknown as Client;
  const stranger = { id: 'x', conn: {} } as unknown as Client;

  const cases: [string, (c: Connections) => void, Record<string, unknown>][] = [
    ['a connection before CONNECT', (c) => c.connectionLog({ address: '10.0.0.7', transport: 'ws' }).info('m'), { address: '10.0.0.7', transport: 'ws' }],
    ['a client before login', (c) => c.clientLog(client).info('m'), { address: '10.0.0.7', transport: 'ws', client: 'dev-a' }],
    ['a device', (c) => c.clientLog(client, { kind: 'device', deviceId: 'dev-a', verifier: 'v' } satisfies Principal).info('m'), { address: '10.0.0.7', transport: 'ws', client: 'dev-a', device: 'dev-a' }],
    ['a service', (c) => c.clientLog(client, { kind: 'service', service: 'ingest' }).info('m'), { client: 'dev-a', service: 'ingest' }],
    ['a stream no listener of ours accepted', (c) => c.clientLog(stranger).info('m'), { address: 'unknown', client: 'x' }],
  ];
  for (const [name, log, fields] of cases) {
    it(`logs ${name} with ${Object.keys(fields).join(', ')}`, () => {
      const logs = captureLogger();
      const connections = new Connections(logs.logger.child({ component: 'broker' }));
      connections.add(stream, { address: '10.0.0.7', transport: 'ws' });
      log(connections);
      expect(logs.lines).toHaveLength(1);
      expect(logs.lines[0]).toMatchObject({ component: 'broker', ...fields });
    });
  }

  it('finds the address a client connected from', () => {
    const connections = new Connections(captureLogger().logger);
    connections.add(stream, { address: '10.0.0.7', transport: 'tcp' });
    expect(connections.addressOf(client)).toBe('10.0.0.7');
    expect(connections.addressOf(stranger)).toBe('unknown');
  });
});
