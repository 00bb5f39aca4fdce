/**
 * Liveness and readiness (core/ops-http.ts; what each process means by them: docs/OPERATIONS.md) with real
 * things: our broker, ingest and the display on a real influxd, devices publishing. The influxd is
 * stopped: ingest spools and stays alive (/livez 200: an orchestrator must not restart it) but is not
 * ready (/readyz 503, naming the store), the display is not ready either, /healthz answers as it always
 * did; the influxd comes back: both are ready again and the spool drains. Ingest without its broker is
 * alive and not ready, naming the broker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { DevicePublisher, waitFor } from '../../harness/publisher.ts';

let influx: InfluxServer;
let pipeline: TestPipeline;
let publisher: DevicePublisher;

beforeAll(async () => {
  influx = await startInfluxd();
  pipeline = await startTestPipeline({
    devices: 1,
    ingestEnv: {
      SENSORPIPE_INFLUX_URL: influx.url,
      SENSORPIPE_COMPLETENESS_INTERVAL: undefined, // ingest's own default, not the pipeline's 200 ms
      SENSORPIPE_BATCH_MAX_DELAY: '10ms',
      SENSORPIPE_RETRY_MIN: '50ms',
      SENSORPIPE_RETRY_MAX: '200ms',
    },
  });
  publisher = await DevicePublisher.connect(pipeline.broker.url, pipeline.devices[0]!);
}, 60_000);

afterAll(async () => {
  await publisher?.close();
  await pipeline?.close();
  await influx?.close();
});

interface Answer {
  status: number;
  body: Record<string, unknown>;
}
const get = async (url: string): Promise<Answer> => {
  const response = await fetch(url);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
};
const ingestAt = (path: string) => get(`http://127.0.0.1:${pipeline.ingest.metricsPort}${path}`);
const displayAt = (path: string) => get(`${pipeline.display.url}${path}`);
const brokerAt = (path: string) => get(new URL(path, pipeline.broker.metricsUrl).href);

describe('liveness and readiness', () => {
  it('all live and ready while everything runs', async () => {
    await publisher.send({ temperature: 20 });
    await waitFor(async () => (await pipeline.store.count()) === 1, 'the reading stored', 10_000);
    for (const at of [ingestAt, displayAt, brokerAt]) {
      expect((await at('/livez')).status).toBe(200);
      expect((await at('/readyz')).status).toBe(200);
      expect((await at('/healthz')).status).toBe(200);
    }
    expect((await ingestAt('/readyz')).body).toMatchObject({ ok: true, notReady: [], broker: true, store: true, spoolFull: false });
  });

  it('store down: ingest spools, alive but not ready (store); the display not ready; /healthz as before', async () => {
    await influx.stop();
    await publisher.send({ temperature: 21 });
    await waitFor(async () => ((await ingestAt('/livez')).body.spoolBytes as number) > 0, 'the reading spooled', 15_000);

    const live = await ingestAt('/livez');
    expect(live).toMatchObject({ status: 200, body: { ok: true } });
    const ready = await ingestAt('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ ok: false, notReady: ['store'], broker: true, store: false, spoolFull: false });
    // /healthz: the body and code it always had.
    const health = await ingestAt('/healthz');
    expect(health.status).toBe(503);
    expect(Object.keys(health.body).sort()).toEqual(['broker', 'ok', 'spoolBytes', 'spoolFull', 'store']);

    expect((await displayAt('/livez')).status).toBe(200);
    expect(await displayAt('/readyz')).toMatchObject({ status: 503, body: { ok: false, store: false } });
    expect((await displayAt('/healthz')).status).toBe(503);
    // The broker does not depend on the store.
    expect((await brokerAt('/readyz')).status).toBe(200);
    // Ingest still takes and acknowledges messages (into the spool): being not ready stops nothing.
    await publisher.send({ temperature: 22 });
  });

  it('store back: ingest and display ready again, the spool drained', async () => {
    await influx.start();
    await waitFor(async () => (await ingestAt('/readyz')).status === 200, 'ingest ready', 15_000);
    await waitFor(async () => (await displayAt('/readyz')).status === 200, 'display ready', 15_000);
    await waitFor(async () => (await pipeline.store.count()) === 3, 'all three readings stored', 15_000);
    expect(await ingestAt('/livez')).toMatchObject({ status: 200, body: { ok: true, spoolBytes: 0 } });
    expect((await ingestAt('/healthz')).status).toBe(200);
  });

  it('broker gone: ingest alive but not ready (broker)', async () => {
    await pipeline.broker.close();
    await waitFor(async () => (await ingestAt('/readyz')).status === 503, 'ingest not ready', 10_000);
    expect((await ingestAt('/readyz')).body).toMatchObject({ ok: false, notReady: ['broker'], broker: false, store: true });
    expect((await ingestAt('/livez')).status).toBe(200);
  });
});
