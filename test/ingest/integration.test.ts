/**
 * ingest end to end against real things: an aedes broker, real MQTT.js devices sending signed
 * telemetry, and a real influxd through the store adapter.
 */
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configSpecs, parseConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { startIngest, type RunningIngest } from '../../ingest/index.ts';
import { readQuarantine } from '../../ingest/quarantine.ts';
import { openStore, type TimeSeriesStore } from '../../store/index.ts';
import { startBareAedes } from '../../harness/aedes.ts';
import { startTestBroker } from '../../harness/broker.ts';
import { influxQuery, startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { DevicePublisher, provision, signedPayload, waitFor, type TestDevice } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let influx: InfluxServer;
beforeAll(async () => {
  influx = await startInfluxd();
}, 60_000);
afterAll(async () => {
  await influx?.close();
});

interface Rig {
  dir: TempDir;
  broker: { url: string; close(): Promise<void> };
  store: TimeSeriesStore;
  ingest: RunningIngest;
  devices: TestDevice[];
  registry: Registry;
  database: string;
}

let rig: Rig;
let dbCounter = 0;

/** `ourBroker`: `sensorpipe broker` (registry logins, ACL, rate limits, its session log) instead of a bare aedes. */
async function startRig(options: { devices?: number; env?: Record<string, string>; ourBroker?: boolean } = {}): Promise<Rig> {
  const dir = await tempDir();
  const registry = new Registry();
  const devices = provision(registry, options.devices ?? 3);
  registry.add('dev-revoked');
  registry.revoke('dev-revoked');
  const registryPath = join(dir.path, 'registry.json');
  await saveRegistry(registryPath, registry);
  const ours = options.ourBroker === true ? await startTestBroker({ registryPath }) : undefined;
  const broker = ours ?? (await startBareAedes());
  const database = `ingest_${process.pid}_${++dbCounter}`;
  const { config } = parseConfig(configSpecs.ingest, {
    env: {
      SENSORPIPE_DATA_DIR: dir.path,
      SENSORPIPE_MQTT_URL: broker.url,
      ...(ours === undefined ? {} : { SENSORPIPE_INGEST_PASSWORD: ours.services.ingest.password }),
      SENSORPIPE_INFLUX_URL: influx.url,
      SENSORPIPE_INFLUX_DATABASE: database,
      SENSORPIPE_INGEST_METRICS_PORT: '0',
      SENSORPIPE_RETRY_MIN: '100ms',
      SENSORPIPE_RETRY_MAX: '1s',
      ...options.env,
    },
  });
  const logger = createLogger({ level: 'silent' });
  const store = await openStore(config, { logger });
  const ingest = await startIngest({ config, registryPath, store, logger });
  await ingest.link.ready;
  return { dir, broker, store, ingest, devices, registry, database };
}

async function stopRig(r: Rig): Promise<void> {
  await r.ingest.close();
  await r.store.close();
  await r.broker.close();
  await r.dir.remove();
}

/** Points stored for a device, counted in influxd directly (not through the adapter under test). */
async function storedPoints(database: string, device: string): Promise<{ ts: number; fields: Record<string, number> }[]> {
  const answer = (await influxQuery(influx.url, `SELECT * FROM readings WHERE device = '${device}' AND time > 0 AND time < now() + 1d`, database)) as {
    results: { series?: { columns: string[]; values: unknown[][] }[] }[];
  };
  const series = answer.results[0]?.series?.[0];
  if (!series) return [];
  return series.values.map((row) => {
    const fields: Record<string, number> = {};
    series.columns.forEach((column, i) => {
      if (typeof row[i] === 'number' && column !== 'time') fields[column] = row[i] as number;
    });
    return { ts: row[0] as number, fields };
  });
}

describe('ingest with a real broker and a real influxd', () => {
  /** Rigs stopped already: a test skipped before starting its own must not stop the previous one again. */
  const stopped = new WeakSet<Rig>();
  afterEach(async () => {
    if (rig === undefined || stopped.has(rig)) return;
    stopped.add(rig);
    await stopRig(rig);
  });

  it('stores good readings exactly and quarantines each hostile message under its reason', async () => {
    rig = await startRig();
    const [a, b] = rig.devices as [TestDevice, TestDevice];
    const pa = await DevicePublisher.connect(rig.broker.url, a);
    const pb = await DevicePublisher.connect(rig.broker.url, b);
    for (let i = 0; i < 5; i++) {
      await pa.send({ temperature: 20 + i / 10, humidity: 40 });
      await pb.send({ temperature: -5.25 });
    }
    const now = Date.now();
    const firstOfA = signedPayload(a, [{ seq: 1, ts: pa.acked[0]!.ts, values: pa.acked[0]!.values }]);
    const hostile: [string, string | Buffer, string][] = [
      ['not JSON', 'hello', 'PAYLOAD_INVALID'],
      ['bad signature', JSON.stringify({ ...JSON.parse(signedPayload(a, [{ seq: 100, ts: now, values: { t: 1 } }])), sig: Buffer.alloc(32, 9).toString('base64') }), 'READING_BAD_SIGNATURE'],
      ['values changed after signing', signedPayload(a, [{ seq: 101, ts: now, values: { t: 1 } }]).replace('"t":1', '"t":2'), 'READING_BAD_SIGNATURE'],
      ['clock far ahead', signedPayload(a, [{ seq: 102, ts: now + 3_600_000, values: { t: 1 } }]), 'READING_TS_OUT_OF_RANGE'],
      ['clock far behind', signedPayload(a, [{ seq: 103, ts: now - 30 * 86_400_000, values: { t: 1 } }]), 'READING_TS_OUT_OF_RANGE'],
      ['another device in the payload', signedPayload(b, [{ seq: 104, ts: now, values: { t: 1 } }]), 'TOPIC_DEVICE_MISMATCH'],
    ];
    for (const [, payload] of hostile) await pa.sendRaw(payload);
    // After more than a device's redelivery window of later messages: a byte-identical copy of a's first
    // message is a duplicate (acknowledged, not written, not quarantined); its seq with other values is a
    // replay.
    for (let i = 0; i < 70; i++) await pa.send({ temperature: 21, humidity: 41 });
    await pa.sendRaw(firstOfA);
    await pa.sendRaw(signedPayload(a, [{ seq: 1, ts: pa.acked[0]!.ts, values: { temperature: 99, humidity: 40 } }]));

    await waitFor(async () => (await readQuarantine(join(rig.dir.path, 'ingest', 'quarantine'))).entries.length >= hostile.length + 1, 'quarantine entries');
    await waitFor(async () => (await storedPoints(rig.database, a.id)).length === 75 && (await storedPoints(rig.database, b.id)).length === 5, 'stored readings');

    const { entries } = await readQuarantine(join(rig.dir.path, 'ingest', 'quarantine'));
    expect(entries.map((e) => e.reason)).toEqual([...hostile.map(([, , reason]) => reason), 'READING_REPLAYED']);
    const storedA = await storedPoints(rig.database, a.id);
    expect(storedA.map((p) => p.ts)).toEqual(pa.acked.map((r) => r.ts));
    expect(storedA[0]?.fields).toEqual({ temperature: 20, humidity: 40, 'reading-seq': 1 });
    expect((await storedPoints(rig.database, b.id)).map((p) => p.fields.temperature)).toEqual([-5.25, -5.25, -5.25, -5.25, -5.25]);
    expect(await rig.ingest.metrics.registry.getSingleMetricAsString('sensorpipe_ingest_duplicates_total')).toContain('sensorpipe_ingest_duplicates_total 1');
    const metrics = await rig.ingest.metrics.registry.getSingleMetricAsString('sensorpipe_ingest_rejected_total');
    expect(metrics).toContain('reason="READING_BAD_SIGNATURE"} 2');
    await pa.close();
    await pb.close();
  });

  it('quarantines a point the store refuses for good, alone, and writes the rest of its batch', async () => {
    rig = await startRig();
    const [a] = rig.devices as [TestDevice];
    // Another tool wrote `humidity` as an integer first: InfluxDB now refuses float humidity (field type conflict).
    await fetch(`${influx.url}/write?db=${rig.database}&precision=ms`, { method: 'POST', body: `readings,device=${a.id} humidity=1i ${Date.now() - 60_000}` });
    const pa = await DevicePublisher.connect(rig.broker.url, a);
    await pa.send({ temperature: 21.5, humidity: 40.5, co2: 415 });
    await waitFor(async () => (await readQuarantine(join(rig.dir.path, 'ingest', 'quarantine'))).entries.length === 1, 'quarantined point');
    const { entries } = await readQuarantine(join(rig.dir.path, 'ingest', 'quarantine'));
    expect(entries[0]).toMatchObject({ reason: 'POINT_REJECTED_BY_STORE', device: a.id });
    expect(JSON.parse(entries[0]!.payload)).toMatchObject({ metric: 'humidity', value: 40.5 });
    const stored = await storedPoints(rig.database, a.id);
    const written = stored.find((p) => p.ts === pa.acked[0]!.ts);
    expect(written?.fields).toMatchObject({ temperature: 21.5, co2: 415 });
    // Counted for the device: its reading (stored, but for the refused point), and the refused point.
    await waitFor(() => rig.ingest.counts.message(a.id)?.accepted === 1, 'counts of the batch');
    expect(rig.ingest.counts.message(a.id)).toMatchObject({ accepted: 1, duplicates: 0, rejected: { POINT_REJECTED_BY_STORE: 1 } });
    await pa.close();
  });

  /** Readings acknowledged while influxd was down, in the last outage(). */
  let acknowledgedDuringOutage = 0;

  /** 50 devices publish steadily while influxd is stopped for `outageMs`; returns the publishers. */
  async function outage(outageMs: number): Promise<DevicePublisher[]> {
    const publishers = await Promise.all(rig.devices.map((d) => DevicePublisher.connect(rig.broker.url, d)));
    let running = true;
    const streams = publishers.map(async (p, i) => {
      while (running) {
        await p.send({ temperature: i + p.acked.length / 1000, humidity: 50 });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const acknowledged = () => publishers.reduce((n, p) => n + p.acked.length, 0);
    await influx.stop();
    const before = acknowledged();
    await new Promise((resolve) => setTimeout(resolve, outageMs));
    acknowledgedDuringOutage = acknowledged() - before;
    await influx.start();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    running = false;
    await Promise.all(streams);
    return publishers;
  }

  /** Every acknowledged reading stored once, with every value it was sent with, and nothing else. */
  async function expectAllStoredOnce(publishers: DevicePublisher[]): Promise<void> {
    for (const p of publishers) {
      const expected = p.acked.map((r) => ({ ts: r.ts, ...r.values }));
      await waitFor(async () => (await storedPoints(rig.database, p.device.id)).length >= expected.length, `${p.device.id} complete`, 90_000, 250);
      const stored = (await storedPoints(rig.database, p.device.id)).map((x) => ({ ts: x.ts, ...Object.fromEntries(Object.keys(p.acked[0]!.values).map((k) => [k, x.fields[k]])) }));
      expect(stored).toEqual(expected);
    }
  }

  it('loses nothing while InfluxDB is down for 30 s under 50 devices, and empties the spool', async (ctx) => {
    if (!influx.managed) ctx.skip('INFLUX_URL is set: an external server cannot be stopped from here');
    rig = await startRig({ devices: 50, ourBroker: true });
    let spoolPeak = 0;
    const watch = setInterval(() => {
      void rig.ingest.metrics.registry.getSingleMetric('sensorpipe_ingest_spool_bytes')!.get().then((m) => (spoolPeak = Math.max(spoolPeak, m.values[0]?.value ?? 0)));
    }, 100);
    const publishers = await outage(30_000);
    clearInterval(watch);
    // Ingest kept taking readings (and acknowledging them to the broker) by spooling them.
    expect(spoolPeak).toBeGreaterThan(0);
    await expectAllStoredOnce(publishers);
    await waitFor(async () => (await rig.ingest.metrics.registry.getSingleMetric('sensorpipe_ingest_spool_bytes')!.get()).values[0]?.value === 0, 'spool empty', 30_000, 200);
    // The devices were acknowledged all through the outage: each sends one reading per 100 ms plus the
    // round trip, so about 300 each in 30 s; a third of that leaves room for a loaded machine.
    expect(acknowledgedDuringOutage).toBeGreaterThan(50 * 100);
    await Promise.all(publishers.map((p) => p.close()));
  }, 180_000);

  it('with a spool too small for the outage: raises the alarm, pauses acknowledgements, loses nothing', async (ctx) => {
    if (!influx.managed) ctx.skip('INFLUX_URL is set: an external server cannot be stopped from here');
    rig = await startRig({ devices: 50, ourBroker: true, env: { SENSORPIPE_SPOOL_MAX: '64KiB', SENSORPIPE_BATCH_MAX_POINTS: '200' } });
    let alarm = false;
    const watch = setInterval(() => {
      void rig.ingest.metrics.registry.getSingleMetric('sensorpipe_ingest_spool_full')!.get().then((m) => {
        if (m.values[0]?.value === 1) alarm = true;
      });
    }, 50);
    const publishers = await outage(8_000);
    await expectAllStoredOnce(publishers);
    clearInterval(watch);
    expect(alarm).toBe(true);
    expect(rig.ingest.pipeline.spoolFull).toBe(false);
    await Promise.all(publishers.map((p) => p.close()));
  }, 180_000);
});
