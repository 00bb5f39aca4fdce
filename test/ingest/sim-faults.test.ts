/**
 * The whole verification path with the simulator as the load: our broker, ingest, a real influxd, and a
 * fleet in which each device has one fault. Every bad message that reaches ingest is quarantined under
 * the reason its fault should produce, the broker refuses foreign-topic publishes (closing the device's
 * connection), every good reading the devices had acknowledged — faulty devices' included — is stored,
 * and none went missing before its acknowledgement, across those disconnections too.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSpecs, parseConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { EXPECTED_REASON, provisionFleet, startFleet, type FaultName, type FleetSummary } from '../../firmware-sim/index.ts';
import { startIngest } from '../../ingest/index.ts';
import { readQuarantine } from '../../ingest/quarantine.ts';
import { openStore } from '../../store/index.ts';
import { startTestBroker } from '../../harness/broker.ts';
import { testFleetOptions } from '../../harness/fleet.ts';
import { influxQuery, startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let influx: InfluxServer;
let dir: TempDir;
beforeAll(async () => {
  influx = await startInfluxd();
  dir = await tempDir();
}, 60_000);
afterAll(async () => {
  await influx?.close();
  await dir?.remove();
});

const FAULTY: [string, FaultName][] = [
  ['sim-0000', 'bad-signature'],
  ['sim-0001', 'non-json'],
  ['sim-0002', 'clock-ahead'],
  ['sim-0003', 'clock-behind'],
  ['sim-0004', 'replay'],
  ['sim-0005', 'foreign-topic'],
  ['sim-0006', 'dropout'],
];

describe('ingest with the simulator on our broker', () => {
  it('quarantines every injected bad message under its reason and stores every good reading', async () => {
    const fleetOptions = testFleetOptions(dir.path, { devices: 8, intervalMs: 20, seed: 3, faults: FAULTY.map(([id, fault]) => `${fault}@${id}`).join(',') });
    const { registryPath } = fleetOptions;
    await provisionFleet(fleetOptions);
    const broker = await startTestBroker({ registryPath, publishRate: 1000, publishBurst: 1000 });
    const logger = createLogger({ level: 'silent' });
    const database = `simfaults_${process.pid}`;
    const { config } = parseConfig(configSpecs.ingest, {
      env: {
        SENSORPIPE_DATA_DIR: join(dir.path, 'ingest-data'),
        SENSORPIPE_MQTT_URL: broker.url,
        SENSORPIPE_INGEST_PASSWORD: broker.services.ingest.password,
        SENSORPIPE_INFLUX_URL: influx.url,
        SENSORPIPE_INFLUX_DATABASE: database,
        SENSORPIPE_INGEST_METRICS_PORT: '0',
      },
    });
    const store = await openStore(config, { logger });
    const ingest = await startIngest({ config, registryPath, store, logger });
    try {
      await ingest.link.ready;
      const fleet = await startFleet({ ...fleetOptions, url: broker.url });
      let summary: FleetSummary;
      try {
        await waitFor(() => (fleet.devices[4]!.report().faultMessages.replay?.acked ?? 0) >= 2, 'two replays', 60_000, 100);
      } finally {
        summary = await fleet.stop();
      }

      const quarantineDir = join(config.dataDir, 'ingest', 'quarantine');
      // Per device and reason: at least the bad messages the broker acknowledged, at most all that were sent
      // (a message in flight when a connection drops may arrive without its PUBACK reaching the device).
      const expected = new Map<string, { min: number; max: number }>();
      for (const [id, fault] of FAULTY) {
        const reason = EXPECTED_REASON[fault];
        const sent = summary.perDevice.find((d) => d.id === id)!.faultMessages[fault];
        if (reason && sent) expected.set(`${id} ${reason}`, { min: sent.acked, max: sent.count });
      }
      const tally = async () => {
        const counts = new Map<string, number>();
        for (const e of (await readQuarantine(quarantineDir)).entries) counts.set(`${e.device} ${e.reason}`, (counts.get(`${e.device} ${e.reason}`) ?? 0) + 1);
        return counts;
      };
      await waitFor(async () => {
        const counts = await tally();
        return [...expected].every(([key, { min }]) => (counts.get(key) ?? 0) >= min);
      }, 'every bad message quarantined', 30_000, 200);
      const counts = await tally();
      expect([...counts.keys()].sort()).toEqual([...expected.keys()].sort()); // nothing else was quarantined
      for (const [key, { min, max }] of expected) {
        expect(counts.get(key), key).toBeGreaterThanOrEqual(min);
        expect(counts.get(key), key).toBeLessThanOrEqual(max);
      }
      expect(expected.size).toBe(5);
      // foreign-topic publishes never reached ingest: the broker refused them.
      expect(summary.faults['foreign-topic']?.count).toBeGreaterThan(0);
      expect([...counts.keys()].some((k) => k.includes('TOPIC_DEVICE_MISMATCH'))).toBe(false);

      // Every good reading acknowledged by the broker is stored, faulty devices' included.
      for (const device of summary.perDevice) {
        const expectedTs = device.ackedReadings.map(([, ts]) => ts).sort((a, b) => a - b);
        expect(expectedTs.length, `${device.id}: good readings acknowledged`).toBeGreaterThan(0);
        // And none went missing on the device's side (a disconnection included): up to its last acknowledged
        // seq, every seq it took was acknowledged, or went to a bad message or a skip on purpose.
        const acknowledgedSeqs = device.ackedReadings.map(([seq]) => seq);
        const accounted = new Set([...acknowledgedSeqs, ...Object.values(device.faultMessages).flatMap((f) => f.seqs)]);
        const unaccounted = Array.from({ length: Math.max(...acknowledgedSeqs) }, (_, i) => i + 1).filter((seq) => !accounted.has(seq));
        expect(unaccounted, `${device.id}: seqs neither acknowledged nor bad on purpose`).toEqual([]);
        const metric = device.profile === 'env' ? 'temperature' : device.profile === 'industrial' ? 'motor_temp' : 'voltage';
        await waitFor(async () => {
          const answer = (await influxQuery(influx.url, `SELECT "${metric}" FROM readings WHERE device = '${device.id}' AND time > 0 AND time < now() + 1d`, database)) as { results: { series?: { values: [number, number][] }[] }[] };
          const stored = (answer.results[0]?.series?.[0]?.values ?? []).map(([ts]) => ts);
          const have = new Set(stored);
          return expectedTs.every((ts) => have.has(ts));
        }, `${device.id}: all ${expectedTs.length} acknowledged good readings stored`, 30_000, 250);
      }
    } finally {
      await ingest.close();
      await store.close();
      await broker.close();
    }
  }, 120_000);
});
