/**
 * A persistent session (CleanSession 0) that subscribes to several filters in one SUBSCRIBE, on a broker
 * with Redis: it gets its SUBACK, and messages. aedes 1.2 stores the packet's whole list once per filter,
 * all at once, and aedes-persistence's broadcast then waited for all but one of those stores forever:
 * no SUBACK, nothing delivered. Ingest subscribes to three filters (signed telemetry and the payload
 * mappings' topics), so with SENSORPIPE_REDIS_URL it received nothing (broker/session-guard.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { importRegistryFile } from '../registry/import.ts';
import { connect, deviceOptions, inbox, makeFleet, type Fleet } from './helpers.ts';
import { within } from './raw.ts';
import { startRedis, type RedisServer } from './redis.ts';

let fleet: Fleet;
let redis: RedisServer | undefined;
let broker: TestBroker | undefined;

beforeAll(async () => {
  fleet = await makeFleet(['multi-dev']);
  redis = await startRedis(fleet.dir.path);
  await importRegistryFile(fleet.registryPath, redis.url);
  broker = await startTestBroker({ registryPath: fleet.registryPath, redisUrl: redis.url });
});

afterAll(async () => {
  await broker?.close();
  await redis?.stop();
  await fleet?.dir.remove();
});

describe('a persistent session on a broker with Redis', () => {
  it('subscribing to several filters at once gets its SUBACK and its messages', async () => {
    const ingest = await connect(broker!.url, { ...broker!.services.ingest, clientId: 'ingest-multi', clean: false });
    const box = inbox(ingest);
    const granted = await within(ingest.subscribeAsync([...topics.ingestFilters], { qos: 1 }), 'the SUBACK of three filters', 5_000);
    expect(granted.map((g) => g.qos)).toEqual(topics.ingestFilters.map(() => 1));
    const device = await connect(broker!.url, deviceOptions(fleet, 'multi-dev'));
    await device.publishAsync(topics.telemetry('multi-dev'), 'reading', { qos: 1 });
    await box.waitFor((m) => m.topic === topics.telemetry('multi-dev'), 'the message on the persistent session', 5_000);
    await device.endAsync();
    await ingest.endAsync();
  });
});
