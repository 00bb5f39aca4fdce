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

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

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

      // The handler is attached before the connection opens: the broker sends what it kept right after
      // the CONNACK, possibly in the same chunk.
      const received: string[] = [];
      const second = mqtt.connect(url, { clientId: 'keeper', clean: false });
      second.on('message', (_t, payload) => received.push(payload.toString()));
      await new Promise<void>((resolve, reject) => {
        second.once('connect', () => resolve());
        second.once('error', reject);
      });
      await waitUntil(() => received.length >= 2000, 'the 2000 kept messages');
      expect(received).toEqual(Array.from({ length: 2000 }, (_, i) => String(i)));
      await second.endAsync();

      // Everything was acknowledged: a third session gets nothing again. The broker starts sending what a
      // session kept right after its CONNACK; a marker published after this client saw the CONNACK, over
      // a connection of its own, reaches it after those, so once the marker is here nothing else is due.
      const again: string[] = [];
      const third = mqtt.connect(url, { clientId: 'keeper', clean: false });
      third.on('message', (_t, payload) => again.push(payload.toString()));
      await new Promise<void>((resolve, reject) => {
        third.once('connect', () => resolve());
        third.once('error', reject);
      });
      const marker = await mqtt.connectAsync(url);
      await marker.publishAsync('q/x', 'marker', { qos: 1 });
      await marker.endAsync();
      await waitUntil(() => again.includes('marker'), 'the marker');
      expect(again).toEqual(['marker']);
      await third.endAsync();
    } finally {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
