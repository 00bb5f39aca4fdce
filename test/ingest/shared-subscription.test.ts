/**
 * Two ingest processes share the telemetry through an MQTT 5 shared subscription on Debian's
 * Mosquitto ($share/ingest/sensors/+/telemetry): each message goes to one of them, and every reading
 * is stored exactly once.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSpecs, parseConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { startIngest, type RunningIngest } from '../../ingest/index.ts';
import { openStore, type TimeSeriesStore } from '../../store/index.ts';
import { influxQuery, startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { startMosquitto, type MosquittoServer } from '../../harness/mosquitto.ts';
import { DevicePublisher, provision, waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let influx: InfluxServer;
let mosquitto: MosquittoServer;
let dir: TempDir;
beforeAll(async () => {
  influx = await startInfluxd();
  mosquitto = await startMosquitto();
  dir = await tempDir();
}, 60_000);
afterAll(async () => {
  await mosquitto?.close();
  await influx?.close();
  await dir?.remove();
});

describe('ingest with a shared subscription', () => {
  it('splits the load between two processes and stores every reading once', async () => {
    const registry = new Registry();
    const devices = provision(registry, 10);
    const registryPath = join(dir.path, 'registry.json');
    await saveRegistry(registryPath, registry);
    const database = `shared_${process.pid}`;
    const logger = createLogger({ level: 'silent' });
    const instances: { ingest: RunningIngest; store: TimeSeriesStore }[] = [];
    for (const name of ['a', 'b']) {
      const { config } = parseConfig(configSpecs.ingest, {
        env: {
          SENSORPIPE_DATA_DIR: join(dir.path, name),
          SENSORPIPE_MQTT_URL: mosquitto.url,
          SENSORPIPE_MQTT_PROTOCOL: '5',
          SENSORPIPE_INGEST_SHARE_GROUP: 'ingest',
          SENSORPIPE_INGEST_CLIENT_ID: `ingest-${name}`,
          SENSORPIPE_INFLUX_URL: influx.url,
          SENSORPIPE_INFLUX_DATABASE: database,
          SENSORPIPE_INGEST_METRICS_PORT: '0',
        },
      });
      const store = await openStore(config, { logger });
      const ingest = await startIngest({ config, registryPath, store, logger });
      await ingest.link.ready;
      instances.push({ ingest, store });
    }

    const publishers = await Promise.all(devices.map((d) => DevicePublisher.connect(mosquitto.url, d)));
    for (let round = 0; round < 30; round++) await Promise.all(publishers.map((p, i) => p.send({ temperature: round + i / 100 })));

    const accepted = async (i: number) => (await instances[i]!.ingest.metrics.registry.getSingleMetric('sensorpipe_ingest_accepted_messages_total')!.get()).values[0]?.value ?? 0;
    await waitFor(async () => (await accepted(0)) + (await accepted(1)) >= 300, 'all messages accepted', 30_000, 100);
    // Each process took a share; together exactly the 300 messages, none twice.
    expect(await accepted(0)).toBeGreaterThan(0);
    expect(await accepted(1)).toBeGreaterThan(0);
    expect((await accepted(0)) + (await accepted(1))).toBe(300);

    for (const p of publishers) {
      await waitFor(async () => {
        const answer = (await influxQuery(influx.url, `SELECT temperature FROM readings WHERE device = '${p.device.id}' AND time > 0 AND time < now() + 1d`, database)) as { results: { series?: { values: [number, number][] }[] }[] };
        return (answer.results[0]?.series?.[0]?.values.length ?? 0) === p.acked.length;
      }, `${p.device.id} stored`, 30_000, 200);
    }
    await Promise.all(publishers.map((p) => p.close()));
    for (const { ingest, store } of instances) {
      await ingest.close();
      await store.close();
    }
  }, 120_000);
});
