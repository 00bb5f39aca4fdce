/**
 * kill -9 of a real ingest process in the middle of a steady stream, then a restart: every reading the
 * devices had acknowledged by the broker is in the store exactly once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { startBareAedes, type BareBroker } from '../../harness/aedes.ts';
import { CLI_PATH } from '../../harness/cli.ts';
import { influxQuery, startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { DevicePublisher, provision, waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let influx: InfluxServer;
let broker: BareBroker;
let dir: TempDir;
beforeAll(async () => {
  influx = await startInfluxd();
  broker = await startBareAedes();
  dir = await tempDir();
}, 60_000);
afterAll(async () => {
  await broker?.close();
  await influx?.close();
  await dir?.remove();
});

let ingestLog = '';

/** Starts `sensorpipe ingest` and resolves once it is subscribed (or has resumed its session). */
async function startIngestProcess(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI_PATH, 'ingest'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      ingestLog += chunk.toString();
      if (/"msg":"(subscribed|session resumed[^"]*)"/.test(ingestLog)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`ingest exited with ${code}:\n${ingestLog.slice(-2000)}`)));
  });
  ingestLog = '';
  return child;
}

async function storedTimestamps(database: string, device: string): Promise<number[]> {
  const answer = (await influxQuery(influx.url, `SELECT temperature FROM readings WHERE device = '${device}' AND time > 0 AND time < now() + 1d`, database)) as {
    results: { series?: { values: [number, number][] }[] }[];
  };
  return (answer.results[0]?.series?.[0]?.values ?? []).map(([ts]) => ts);
}

describe('ingest crash', () => {
  it('loses and duplicates nothing acknowledged across kill -9 and a restart', async () => {
    const registry = new Registry();
    const devices = provision(registry, 5);
    const registryPath = join(dir.path, 'registry.json');
    await saveRegistry(registryPath, registry);
    const database = `crash_${process.pid}`;
    const env = {
      SENSORPIPE_DATA_DIR: join(dir.path, 'data'),
      SENSORPIPE_REGISTRY: registryPath,
      SENSORPIPE_MQTT_URL: broker.url,
      SENSORPIPE_INFLUX_URL: influx.url,
      SENSORPIPE_INFLUX_DATABASE: database,
      SENSORPIPE_INGEST_METRICS_PORT: '0',
      SENSORPIPE_LOG_LEVEL: 'info',
    };
    let ingest = await startIngestProcess(env);
    const publishers = await Promise.all(devices.map((d) => DevicePublisher.connect(broker.url, d)));
    // Wait until ingest is subscribed and writing: the first reading of device 0 is in the store.
    await publishers[0]!.send({ temperature: 0 });
    await waitFor(async () => (await storedTimestamps(database, devices[0]!.id)).length === 1, 'ingest up', 30_000, 100);

    let running = true;
    let base = Date.now();
    const streams = publishers.map(async (p, i) => {
      while (running) {
        await p.send({ temperature: i + Math.random() }, base++);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    ingest.kill('SIGKILL');
    await new Promise((resolve) => ingest.once('exit', resolve));
    await new Promise((resolve) => setTimeout(resolve, 1000)); // devices keep publishing; the broker holds the messages
    ingest = await startIngestProcess(env);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    running = false;
    await Promise.all(streams);

    for (const p of publishers) {
      const expected = p.acked.map((r) => r.ts).sort((x, y) => x - y);
      await waitFor(async () => (await storedTimestamps(database, p.device.id)).length >= expected.length, `${p.device.id} stored`, 60_000, 200);
      const stored = await storedTimestamps(database, p.device.id);
      expect(stored).toEqual(expected); // every acknowledged reading, once, and nothing else
    }
    const total = publishers.reduce((n, p) => n + p.acked.length, 0);
    expect(total).toBeGreaterThan(100);
    ingest.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => ingest.once('exit', resolve));
    expect(code).toBe(0);
    await Promise.all(publishers.map((p) => p.close()));
  }, 180_000);
});
