/**
 * Issue 14, item 3: a byte-identical redelivery is a duplicate (acknowledged, counted, not written, not
 * quarantined) however many messages came after it, and a different message reusing old seqs is
 * READING_REPLAYED; a restart of ingest (seq memory reloaded from disk) gives the same answers. Our
 * broker, ingest and the embedded store, all real; devices are real MQTT.js clients.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { configSpecs, parseConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { startIngest, type IngestConfig, type RunningIngest } from '../../ingest/index.ts';
import { readQuarantine } from '../../ingest/quarantine.ts';
import { openStore, type TimeSeriesStore } from '../../store/index.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { DevicePublisher, provision, signedPayload, waitFor, type TestDevice } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

interface Rig {
  dir: TempDir;
  broker: TestBroker;
  store: TimeSeriesStore;
  config: IngestConfig;
  registryPath: string;
  ingest: RunningIngest;
  device: TestDevice;
  publisher: DevicePublisher;
}

const logger = createLogger({ level: 'silent' });
let rig: Rig | undefined;

async function startRig(env: Record<string, string> = {}): Promise<Rig> {
  const dir = await tempDir();
  const registry = new Registry();
  const [device] = provision(registry, 1) as [TestDevice];
  const registryPath = join(dir.path, 'registry.json');
  await saveRegistry(registryPath, registry);
  const broker = await startTestBroker({ registryPath, publishRate: 10_000, publishBurst: 10_000 });
  const { config } = parseConfig(configSpecs.ingest, {
    env: {
      SENSORPIPE_DATA_DIR: join(dir.path, 'data'),
      SENSORPIPE_MQTT_URL: broker.url,
      SENSORPIPE_INGEST_PASSWORD: broker.services.ingest.password,
      SENSORPIPE_INGEST_METRICS_PORT: '0',
      SENSORPIPE_RETRY_MIN: '50ms',
      SENSORPIPE_RETRY_MAX: '200ms',
      ...env,
    },
  });
  const store = await openStore(config, { logger });
  const ingest = await startIngest({ config, registryPath, store, logger });
  await ingest.link.ready;
  const publisher = await DevicePublisher.connect(broker.url, device);
  return { dir, broker, store, config, registryPath, ingest, device, publisher };
}

/** Stops ingest and starts it again on the same data folder: the seq memory comes back from disk. */
async function restartIngest(r: Rig): Promise<void> {
  await r.ingest.close();
  r.ingest = await startIngest({ config: r.config, registryPath: r.registryPath, store: r.store, logger });
  await r.ingest.link.ready;
}

afterEach(async () => {
  if (rig === undefined) return;
  await rig.publisher.close();
  await rig.ingest.close();
  await rig.store.close();
  await rig.broker.close();
  await rig.dir.remove();
  rig = undefined;
});

async function counter(ingest: RunningIngest, name: 'duplicates' | 'acceptedMessages'): Promise<number> {
  return (await ingest.metrics[name].get()).values.reduce((sum, v) => sum + v.value, 0);
}

async function labelled(ingest: RunningIngest, name: 'rejected' | 'outsideWindow', label: string): Promise<number> {
  return (await ingest.metrics[name].get()).values.find((v) => Object.values(v.labels).includes(label))?.value ?? 0;
}

async function stored(r: Rig): Promise<Map<number, number>> {
  const result = await r.store.query({ device: r.device.id, metrics: ['temperature'], from: Date.now() - 3_600_000, to: Date.now() + 60_000, mode: 'raw', maxPoints: 10_000 });
  return new Map(result.series[0]?.points.map((p) => [p.ts, p.value]));
}

async function quarantined(r: Rig): Promise<string[]> {
  return (await readQuarantine(join(r.config.dataDir, 'ingest', 'quarantine'))).entries.map((e) => `${e.device} ${e.reason}`);
}

/** Publishes `count` readings, one message each, and waits until the store holds all of them. */
async function publishAndStore(r: Rig, count: number): Promise<Map<number, number>> {
  for (let i = 0; i < count; i++) await r.publisher.send({ temperature: 20 + i / 100 });
  await waitFor(async () => (await stored(r)).size === count, `${count} readings stored`);
  return stored(r);
}

it('refuses to start with a fleet window smaller than twice the unacknowledged limit', async () => {
  const dir = await tempDir();
  const { config } = parseConfig(configSpecs.ingest, { env: { SENSORPIPE_DATA_DIR: dir.path, SENSORPIPE_INGEST_METRICS_PORT: '0', SENSORPIPE_MAX_UNACKED: '1000', SENSORPIPE_REDELIVERY_FLEET_WINDOW: '1999' } });
  const store = { kind: 'embedded' as const, write: () => Promise.reject(new Error('unused')), query: () => Promise.reject(new Error('unused')), health: () => Promise.resolve({ ok: true }) };
  await expect(startIngest({ config, registryPath: join(dir.path, 'registry.json'), store, logger })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('SENSORPIPE_REDELIVERY_FLEET_WINDOW') });
  await dir.remove();
});

describe('redelivery and replay across more than the per-device window', () => {
  it('takes the broker redelivering 200 unacknowledged messages of one device for duplicates', async () => {
    // A long batch delay keeps the 200 messages unacknowledged while ingest's connection drops.
    rig = await startRig({ SENSORPIPE_BATCH_MAX_DELAY: '8s' });
    const r = rig;
    for (let i = 0; i < 200; i++) await r.publisher.send({ temperature: i });
    await waitFor(async () => (await counter(r.ingest, 'acceptedMessages')) === 200, '200 accepted');
    expect(r.ingest.link.unacknowledged).toBe(200);
    (r.ingest.link.client.stream as { destroy(): void }).destroy();
    // The broker resends every message it had not got a PUBACK for [MQTT-4.4.0-1], in order: the first
    // of them has 199 messages of the same device after it.
    await waitFor(async () => (await counter(r.ingest, 'duplicates')) === 200, '200 duplicates');
    await waitFor(async () => (await stored(r)).size === 200, '200 stored');
    await waitFor(() => r.ingest.link.unacknowledged === 0, 'everything acknowledged');
    expect(await quarantined(r)).toEqual([]);
    expect(await labelled(r.ingest, 'rejected', 'READING_REPLAYED')).toBe(0);
    expect(await counter(r.ingest, 'acceptedMessages')).toBe(200);
    // All recognised from memory (the fleet window), none needed a store lookup.
    expect((await r.ingest.metrics.outsideWindow.get()).values.reduce((sum, v) => sum + v.value, 0)).toBe(0);
  }, 60_000);

  it('counts byte-identical copies of old messages as duplicates and a different message under an old seq as a replay, before and after a restart', async () => {
    rig = await startRig(); // 64 messages per device, 65,536 fleet-wide: the defaults
    const r = rig;
    const before = await publishAndStore(r, 200);
    const firstFive = r.publisher.acked.slice(0, 5);
    const copies = firstFive.map((reading) => signedPayload(r.device, [reading]));
    const third = firstFive[2]!;
    const replay = signedPayload(r.device, [{ ...third, values: { temperature: -40 } }]);

    for (let round = 1; round <= 2; round++) {
      for (const copy of copies) await r.publisher.sendRaw(copy);
      await r.publisher.sendRaw(replay);
      await waitFor(async () => (await counter(r.ingest, 'duplicates')) === 5 && (await labelled(r.ingest, 'rejected', 'READING_REPLAYED')) === 1, `round ${round}: 5 duplicates and 1 replay counted`);
      await waitFor(() => r.ingest.link.unacknowledged === 0, 'everything acknowledged');
      // Only the replay is quarantined; the store is exactly as before.
      expect(await quarantined(r)).toEqual(Array.from({ length: round }, () => `${r.device.id} READING_REPLAYED`));
      expect(await stored(r)).toEqual(before);
      expect(await counter(r.ingest, 'acceptedMessages')).toBe(round === 1 ? 200 : 0);
      if (round === 1) await restartIngest(r); // the same answers from the seq memory on disk
    }
  }, 60_000);

  it('asks the store about copies older than both windows: duplicates if stored as sent, replays if not, after a restart too', async () => {
    // Windows far smaller than the 50 messages: 8 per device, 16 fleet-wide (so at most 8 unacknowledged).
    rig = await startRig({ SENSORPIPE_REDELIVERY_WINDOW: '8', SENSORPIPE_REDELIVERY_FLEET_WINDOW: '16', SENSORPIPE_MAX_UNACKED: '8' });
    const r = rig;
    const before = await publishAndStore(r, 50);
    const acked = r.publisher.acked;
    const copies = acked.slice(0, 3).map((reading) => signedPayload(r.device, [reading]));
    // The same readings as three sent one by one, now in one message: no message had these seqs.
    const regrouped = signedPayload(r.device, acked.slice(9, 12));
    const replay = signedPayload(r.device, [{ ...acked[1]!, values: { temperature: -40 } }]);
    const otherTime = signedPayload(r.device, [{ ...acked[2]!, ts: acked[2]!.ts - 1 }]);

    for (let round = 1; round <= 2; round++) {
      for (const copy of [...copies, regrouped]) await r.publisher.sendRaw(copy);
      await r.publisher.sendRaw(replay);
      await r.publisher.sendRaw(otherTime);
      await waitFor(async () => (await labelled(r.ingest, 'outsideWindow', 'duplicate')) === 4 && (await labelled(r.ingest, 'outsideWindow', 'replay')) === 2, `round ${round}: looked up`);
      await waitFor(() => r.ingest.link.unacknowledged === 0, 'everything acknowledged');
      expect(await counter(r.ingest, 'duplicates')).toBe(4);
      expect(await labelled(r.ingest, 'rejected', 'READING_REPLAYED')).toBe(2);
      expect(await labelled(r.ingest, 'outsideWindow', 'unverified')).toBe(0);
      expect(await quarantined(r)).toEqual(Array.from({ length: 2 * round }, () => `${r.device.id} READING_REPLAYED`));
      expect(await stored(r)).toEqual(before);
      if (round === 1) await restartIngest(r);
    }
  }, 60_000);
});
