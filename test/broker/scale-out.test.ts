/**
 * Scale-out: two broker processes' worth of brokers (two instances here) share one real redis-server
 * (Debian package): a device connected to broker A reaches a subscriber on broker B, and B's
 * subscribers see the retained device status that A published.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { connect, deviceOptions, inbox, makeFleet, type Fleet } from './helpers.ts';
import { within } from './raw.ts';
import { startRedis, type RedisServer } from './redis.ts';
import { importRegistryFile } from '../registry/import.ts';

let fleet: Fleet;
let redis: RedisServer | undefined;
let redisUrl: string;
let brokerA: TestBroker;
let brokerB: TestBroker;

beforeAll(async () => {
  fleet = await makeFleet(['roamer']);
  redis = await startRedis(fleet.dir.path);
  redisUrl = redis.url;
  // With Redis, the registry lives there too (docs/REGISTRY.md).
  await importRegistryFile(fleet.registryPath, redisUrl);
  brokerA = await startTestBroker({ registryPath: fleet.registryPath, redisUrl });
  brokerB = await startTestBroker({ registryPath: fleet.registryPath, redisUrl, adminPassword: brokerA.services.admin.password, ingestPassword: brokerA.services.ingest.password });
});

afterAll(async () => {
  await brokerA?.close();
  await brokerB?.close();
  await redis?.stop();
  await fleet?.dir.remove();
});

describe('two brokers on one Redis', () => {
  it('a device on broker A reaches a subscriber on broker B, at QoS 0 and 1, and B serves A\'s retained status', async () => {
    const subscriber = await connect(brokerB.url, { ...brokerB.services.ingest, clientId: 'ingest-b' });
    const box = inbox(subscriber);
    await subscriber.subscribeAsync(topics.allTelemetry, { qos: 1 });
    const device = await connect(brokerA.url, deviceOptions(fleet, 'roamer'));
    // The subscription on B travels through Redis; publish until it is in place.
    await within((async () => {
      for (let i = 0; !box.messages.some((m) => m.payload.toString().startsWith('q1-')); i++) {
        await device.publishAsync(topics.telemetry('roamer'), `q1-${i}`, { qos: 1 });
        await new Promise((r) => setTimeout(r, 100));
      }
    })(), 'a message across brokers');
    await device.publishAsync(topics.telemetry('roamer'), 'q0-across', { qos: 0 });
    await box.waitFor((m) => m.payload.toString() === 'q0-across', 'the QoS 0 message across brokers');
    expect(box.messages.every((m) => m.topic === topics.telemetry('roamer'))).toBe(true);

    const admin = await connect(brokerB.url, { ...brokerB.services.admin, clientId: 'admin-b' });
    const statusBox = inbox(admin);
    await admin.subscribeAsync(topics.status('roamer'), { qos: 1 });
    const status = await statusBox.waitFor((m) => m.topic === topics.status('roamer'), 'retained status on B');
    expect(status.retain).toBe(true);
    expect(JSON.parse(status.payload.toString())).toMatchObject({ device: 'roamer', state: 'online' });
    await admin.endAsync();
    await device.endAsync();
    await subscriber.endAsync();
  });
});
