/**
 * What an operator sees of a running ingest: its store calls measured in its own registry by the store
 * port's wrapper (store/metrics.ts), served at /metrics with /healthz beside it, and its log lines
 * carrying `component: ingest` once. Real things: an aedes broker, an MQTT.js device, the embedded store.
 */
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configSpecs, parseConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import { startIngest, type RunningIngest } from '../../ingest/index.ts';
import { openStore, type TimeSeriesStore } from '../../store/index.ts';
import { startBareAedes, type BareBroker } from '../../harness/aedes.ts';
import { DevicePublisher, provision, waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
let broker: BareBroker;
let store: TimeSeriesStore;
let ingest: RunningIngest;
let publisher: DevicePublisher;
let logLines: string[];

beforeEach(async () => {
  dir = await tempDir();
  const registry = new Registry();
  const [device] = provision(registry, 1);
  const registryPath = join(dir.path, 'registry.json');
  await saveRegistry(registryPath, registry);
  broker = await startBareAedes();
  const { config } = parseConfig(configSpecs.ingest, {
    env: {
      SENSORPIPE_DATA_DIR: dir.path,
      SENSORPIPE_MQTT_URL: broker.url,
      SENSORPIPE_INGEST_METRICS_PORT: '0',
      SENSORPIPE_BATCH_MAX_DELAY: '10ms',
      SENSORPIPE_RETRY_MIN: '50ms',
      SENSORPIPE_RETRY_MAX: '200ms',
    },
  });
  logLines = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  store = await openStore(config);
  ingest = await startIngest({ config, registryPath, store, logger });
  await ingest.link.ready;
  publisher = await DevicePublisher.connect(broker.url, device!);
});
afterEach(async () => {
  await publisher?.client.endAsync();
  await ingest?.close();
  await store?.close();
  await broker?.close();
  await dir?.remove();
});

const url = (path: string) => `http://127.0.0.1:${ingest.metricsPort}${path}`;
const metricsText = async () => (await fetch(url('/metrics'))).text();
async function healthz(): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url('/healthz'));
  return { status: response.status, body: await response.json() };
}

describe('ingest operations', () => {
  it('measures its store writes in its own registry, and its failed writes by error code', async () => {
    for (let i = 0; i < 3; i++) await publisher.send({ temperature: 20 + i, humidity: 50 });
    await waitFor(async () => (await store.count()) === 6, 'six points stored', 10_000);
    await waitFor(async () => (await metricsText()).includes('sensorpipe_store_points_total{outcome="written",adapter="embedded"} 6'), 'six written points counted', 5_000);
    const text = await metricsText();
    expect(text).toMatch(/^sensorpipe_store_operation_seconds_count\{operation="write",adapter="embedded"\} [1-9]/m);
    expect(text).not.toContain('sensorpipe_store_errors_total{');
    expect(await healthz()).toEqual({ status: 200, body: { ok: true, broker: true, store: true, spoolBytes: 0, spoolFull: false } });

    // The store goes away: the next batch is spooled, and the failed write is counted under its code.
    await store.close();
    await publisher.send({ temperature: 30, humidity: 60 });
    await waitFor(
      async () => /^sensorpipe_store_errors_total\{operation="write",code="STORE_UNAVAILABLE",adapter="embedded"\} [1-9]/m.test(await metricsText()),
      'the failed write counted',
      10_000,
    );
    // The failed write is counted before its batch reaches the spool: wait for the spool, then look.
    await waitFor(async () => ((await healthz()).body as { spoolBytes: number }).spoolBytes > 0, 'the batch spooled', 10_000);
    const down = await healthz();
    expect(down.status).toBe(503);
    expect(down.body).toMatchObject({ ok: false, broker: true, store: false, spoolFull: false });
    expect((down.body as { spoolBytes: number }).spoolBytes).toBeGreaterThan(0);
    expect((await ingest.metrics.registry.getSingleMetric('sensorpipe_ingest_spool_bytes')!.get()).values[0]?.value).toBeGreaterThan(0);
  });

  it('answers other paths with 404 and an error code', async () => {
    const response = await fetch(url('/nothing-here'));
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('writes each log line with one `component`, ingest, and a rejected message with its device', async () => {
    await publisher.client.publishAsync(topics.telemetry(publisher.device.id), 'not json', { qos: 1 });
    await waitFor(() => logLines.some((line) => line.includes('"message rejected"')), 'the rejection logged', 5_000);
    expect(logLines.length).toBeGreaterThan(1);
    for (const line of logLines) {
      expect(line.match(/"component":/g), line).toHaveLength(1);
      expect(JSON.parse(line)).toMatchObject({ component: 'ingest' });
    }
    const rejected = logLines.map((line) => JSON.parse(line) as Record<string, unknown>).find((entry) => entry.msg === 'message rejected');
    expect(rejected).toMatchObject({ device: publisher.device.id, reason: expect.any(String) as unknown });
  });
});
