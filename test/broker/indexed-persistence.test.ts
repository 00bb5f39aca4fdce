/**
 * The broker's indexed persistence passes aedes-persistence's own abstract suite (50 node:test cases,
 * run in a child process because that suite is written for node:test), and keeps a persistent session's
 * queued QoS 1 messages in order through a real aedes broker.
 */
import { execFile } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { indexedMemoryPersistence } from '../../broker/indexed-persistence.ts';

describe('indexed persistence', () => {
  it('passes aedes-persistence abstract suite', async () => {
    const script = fileURLToPath(new URL('./indexed-persistence.abstract.ts', import.meta.url));
    const output = await new Promise<string>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', '--test', script], { timeout: 60_000 }, (_err, stdout, stderr) => resolve(stdout + stderr));
    });
    expect(output).toMatch(/# fail 0/);
    expect(Number(/# pass (\d+)/.exec(output)?.[1])).toBeGreaterThanOrEqual(50);
  });

  it('delivers what waited for an offline persistent session, in order, once', async () => {
    const broker = await Aedes.createBroker({ persistence: indexedMemoryPersistence() as never });
    const server = createServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const first = await mqtt.connectAsync(url, { clientId: 'keeper', clean: false });
      await first.subscribeAsync('q/#', { qos: 1 });
      await first.endAsync();
      const publisher = await mqtt.connectAsync(url);
      for (let i = 0; i < 2000; i++) await publisher.publishAsync('q/x', String(i), { qos: 1 });
      await publisher.endAsync();

      const received: string[] = [];
      const second = await mqtt.connectAsync(url, { clientId: 'keeper', clean: false, manualConnect: false });
      second.on('message', (_t, payload) => received.push(payload.toString()));
      const deadline = Date.now() + 20_000;
      while (received.length < 2000 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(received).toEqual(Array.from({ length: 2000 }, (_, i) => String(i)));
      await second.endAsync();

      // Everything was acknowledged: a third session gets nothing again.
      const again: string[] = [];
      const third = await mqtt.connectAsync(url, { clientId: 'keeper', clean: false });
      third.on('message', (_t, payload) => again.push(payload.toString()));
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(again).toEqual([]);
      await third.endAsync();
    } finally {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
