/**
 * Issue 19, trust on the dashboard: ingest counts what became of each registered device's messages and
 * keeps the counts retained on pipeline/counts/{device} (QoS 1), exactly: readings accepted, readings
 * that were duplicates (the same bytes again), rejections by reason (a bad signature, a replayed seq).
 * Made-up device ids get no counts topic. The counts survive an ingest restart, with the same `since`.
 * Our broker, ingest and the embedded store, all real; devices are real MQTT.js clients.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type IPublishPacket } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSpecs, parseConfig, type ConfigOf } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { DeviceCountsMessageSchema, type DeviceCountsMessage } from '../../core/schemas.ts';
import { signTelemetry } from '../../core/signature.ts';
import { topics } from '../../core/topics.ts';
import { COUNTS_FILE } from '../../ingest/device-counts.ts';
import { startIngest, type RunningIngest } from '../../ingest/index.ts';
import { openStore, type TimeSeriesStore } from '../../store/index.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { provision, signedPayload, waitFor, type TestDevice } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const logger = createLogger({ level: 'silent' });

let dir: TempDir;
let broker: TestBroker;
let store: TimeSeriesStore;
let config: ConfigOf<typeof configSpecs.ingest>;
let registryPath: string;
let ingest: RunningIngest;
let device: TestDevice;
let quiet: TestDevice;
let deviceClient: mqtt.MqttClient;
let admin: mqtt.MqttClient;

beforeAll(async () => {
  dir = await tempDir();
  const registry = new Registry();
  [device, quiet] = provision(registry, 2) as [TestDevice, TestDevice];
  registryPath = join(dir.path, 'registry.json');
  await saveRegistry(registryPath, registry);
  broker = await startTestBroker({ registryPath, publishRate: 10_000, publishBurst: 10_000 });
  config = parseConfig(configSpecs.ingest, {
    env: {
      SENSORPIPE_DATA_DIR: join(dir.path, 'data'),
      SENSORPIPE_MQTT_URL: broker.url,
      SENSORPIPE_INGEST_PASSWORD: broker.services.ingest.password,
      SENSORPIPE_INGEST_METRICS_PORT: '0',
    },
  }).config;
  store = await openStore(config, { logger });
  ingest = await startIngest({ config, registryPath, store, logger });
  await ingest.link.ready;
  deviceClient = await mqtt.connectAsync(broker.url, { clientId: device.id, username: device.id, password: device.credentials.mqttPassword, reconnectPeriod: 0 });
  admin = await mqtt.connectAsync(broker.url, { username: broker.services.admin.username, password: broker.services.admin.password, reconnectPeriod: 0, protocolVersion: 4 });
}, 60_000);

afterAll(async () => {
  await deviceClient?.endAsync();
  await admin?.endAsync();
  await ingest?.close();
  await store?.close();
  await broker?.close();
  await dir?.remove();
});

/** The retained counts messages a new subscriber gets (with the QoS they were kept at), by device. */
async function retainedCounts(): Promise<Map<string, { message: DeviceCountsMessage; qos: number; retain: boolean }>> {
  const client = await mqtt.connectAsync(broker.url, { username: broker.services.admin.username, password: broker.services.admin.password, reconnectPeriod: 0, protocolVersion: 4 });
  const found = new Map<string, { message: DeviceCountsMessage; qos: number; retain: boolean }>();
  client.on('message', (topic, payload, packet: IPublishPacket) => {
    const message = DeviceCountsMessageSchema.parse(JSON.parse(payload.toString()));
    expect(topic).toBe(topics.counts(message.device));
    found.set(message.device, { message, qos: packet.qos, retain: packet.retain });
  });
  await client.subscribeAsync(topics.allCounts, { qos: 1 });
  // Retained messages follow the SUBACK; a round trip through the broker after it makes sure they are in.
  await client.publishAsync('pipeline/x-sync', '', { qos: 1 }).catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 200));
  await client.endAsync();
  return found;
}

async function countsOf(id: string): Promise<DeviceCountsMessage | undefined> {
  return (await retainedCounts()).get(id)?.message;
}

const now = Date.now();
const readings: { seq: number; ts: number; values: Record<string, number> }[] = [
  { seq: 1, ts: now - 3000, values: { temperature: 20.5 } },
  { seq: 2, ts: now - 2000, values: { temperature: 20.6 } },
  { seq: 3, ts: now - 1000, values: { temperature: 20.7, humidity: 40 } },
];

describe('per-device counts on pipeline/counts/{device}', () => {
  let since: number;

  it('counts accepted readings, duplicates (the same bytes again) and rejections by reason, exactly', async () => {
    const good = signedPayload(device, readings);
    await deviceClient.publishAsync(topics.telemetry(device.id), good, { qos: 1 });
    await waitFor(async () => (await countsOf(device.id))?.accepted === 3, 'accepted 3');
    // The same bytes again: acknowledged, not written: 3 duplicate readings.
    await deviceClient.publishAsync(topics.telemetry(device.id), good, { qos: 1 });
    // Signed with another device's key.
    const forged = JSON.stringify(signTelemetry({ v: 1, device: device.id, readings: [{ seq: 4, ts: now, values: { temperature: 99 } }] }, quiet.key));
    await deviceClient.publishAsync(topics.telemetry(device.id), forged, { qos: 1 });
    // A different message reusing seq 2: a replay.
    await deviceClient.publishAsync(topics.telemetry(device.id), signedPayload(device, [{ seq: 2, ts: now - 2000, values: { temperature: -5 } }]), { qos: 1 });
    // Made-up ids (published by the admin account, which may publish anywhere): quarantined, never counted.
    for (let i = 0; i < 5; i++) {
      const ghost = `ghost-${i}`;
      await admin.publishAsync(topics.telemetry(ghost), JSON.stringify(signTelemetry({ v: 1, device: ghost, readings: [{ seq: 1, ts: now, values: { t: 1 } }] }, device.key)), { qos: 1 });
    }
    const expected = { accepted: 3, duplicates: 3, rejected: { READING_BAD_SIGNATURE: 1, READING_REPLAYED: 1 } };
    await waitFor(async () => {
      const c = await countsOf(device.id);
      return c?.duplicates === 3 && c.rejected.READING_BAD_SIGNATURE === 1 && c.rejected.READING_REPLAYED === 1;
    }, 'duplicates and rejections counted');
    await waitFor(async () => (await ingest.metrics.rejected.get()).values.find((v) => v.labels.reason === 'DEVICE_UNKNOWN')?.value === 5, 'made-up ids quarantined');
    await new Promise((resolve) => setTimeout(resolve, 1500)); // a counts tick after them: still nothing published for them
    const all = await retainedCounts();
    const mine = all.get(device.id)!;
    expect(mine.message).toMatchObject({ v: 1, device: device.id, ...expected });
    expect(mine.message.rejected).toEqual(expected.rejected);
    expect(mine.retain).toBe(true);
    expect(mine.qos).toBe(1);
    expect(mine.message.since).toBeLessThanOrEqual(mine.message.at);
    since = mine.message.since;
    // Only devices that sent something and are registered: no ghost, no silent device.
    expect([...all.keys()]).toEqual([device.id]);
    // The made-up ids were quarantined all the same (nothing is silently dropped).
    const rejectedTotal = (await ingest.metrics.rejected.get()).values.find((v) => v.labels.reason === 'DEVICE_UNKNOWN')?.value;
    expect(rejectedTotal).toBe(5);
  }, 60_000);

  it('keeps the counts and their `since` across an ingest restart, and counts on from them', async () => {
    await ingest.close();
    // A clean stop wrote everything counted.
    const file = JSON.parse(await readFile(join(config.dataDir, 'ingest', COUNTS_FILE), 'utf8')) as { devices: DeviceCountsMessage[] };
    expect(file.devices).toMatchObject([{ device: device.id, accepted: 3, duplicates: 3, since }]);
    ingest = await startIngest({ config, registryPath, store, logger });
    await ingest.link.ready;
    await deviceClient.publishAsync(topics.telemetry(device.id), signedPayload(device, [{ seq: 5, ts: Date.now(), values: { temperature: 21 } }]), { qos: 1 });
    await waitFor(async () => (await countsOf(device.id))?.accepted === 4, 'accepted 4 after the restart');
    const after = (await countsOf(device.id))!;
    expect(after).toMatchObject({ accepted: 4, duplicates: 3, rejected: { READING_BAD_SIGNATURE: 1, READING_REPLAYED: 1 }, since });
  }, 60_000);
});
