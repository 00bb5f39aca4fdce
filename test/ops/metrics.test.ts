/**
 * What Prometheus gets from each process's /metrics, against a real broker, ingest and display with
 * signed devices publishing: no gauge named like a counter (`*_total`), prom-client's process metrics in
 * every process, per-device series that SENSORPIPE_METRICS_PER_DEVICE=false removes, and ingest's
 * metrics port reachable on another address only when SENSORPIPE_INGEST_METRICS_HOST says so.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { DevicePublisher, waitFor } from '../../harness/publisher.ts';

interface Running extends TestPipeline {
  publishers: DevicePublisher[];
  /** /metrics of each process, by name. */
  scrape(): Promise<Record<'broker' | 'ingest' | 'display', string>>;
}
let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

/** Broker, ingest (embedded store) and display; two devices publish a reading each. */
async function startPipeline(env: Record<string, string> = {}): Promise<Running> {
  const pipeline = await startTestPipeline({
    devices: 2,
    broker: { metricsPerDevice: env.SENSORPIPE_METRICS_PER_DEVICE !== 'false' },
    ingestEnv: { SENSORPIPE_COMPLETENESS_INTERVAL: '100ms', SENSORPIPE_BATCH_MAX_DELAY: '10ms', ...env },
  });
  const { broker, ingest, display } = pipeline;
  const publishers = await Promise.all(pipeline.devices.map((device) => DevicePublisher.connect(broker.url, device)));
  for (const publisher of publishers) await publisher.send({ temperature: 21 });
  const text = async (url: string) => (await fetch(url)).text();
  const scrape = async () => ({
    broker: await broker.metricsText(),
    ingest: await text(`http://127.0.0.1:${ingest.metricsPort}/metrics`),
    display: await text(`${display.url}/metrics`),
  });
  // Ingest has received both devices once its accepted count says so (per-device gauges follow within 100 ms).
  await waitFor(async () => /^sensorpipe_ingest_accepted_readings_total 2$/m.test((await scrape()).ingest), 'both readings accepted', 10_000);
  await new Promise((resolve) => setTimeout(resolve, 300));
  return {
    ...pipeline,
    publishers,
    scrape,
    close: async () => {
      for (const publisher of publishers) await publisher.close();
      await pipeline.close();
    },
  };
}

/** `# TYPE name kind` of an exposition. */
const types = (text: string) => [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => ({ name: m[1]!, kind: m[2]! }));

describe('/metrics of broker, ingest and display', () => {
  it('has no gauge named like a counter (*_total), and the quarantine evictions are a counter', async () => {
    running = await startPipeline();
    const scraped = await running.scrape();
    for (const [process, text] of Object.entries(scraped)) {
      const all = types(text);
      expect(all.length, process).toBeGreaterThan(10);
      expect(all.filter((t) => t.kind === 'gauge' && t.name.endsWith('_total')).map((t) => t.name), process).toEqual([]);
    }
    expect(types(scraped.ingest)).toContainEqual({ name: 'sensorpipe_ingest_quarantine_evicted_total', kind: 'counter' });
    expect(scraped.ingest).toMatch(/^sensorpipe_ingest_quarantine_evicted_total 0$/m);
  });

  it('has the process metrics of prom-client in every process', async () => {
    running = await startPipeline();
    for (const [process, text] of Object.entries(await running.scrape())) {
      for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes']) {
        expect(text, `${process}: ${name}`).toMatch(new RegExp(`^${name}(\\{[^}]*\\})? [0-9.e+-]+$`, 'm'));
      }
    }
  });

  it('serves per-device series by default: online (broker), completeness and missing readings (ingest)', async () => {
    running = await startPipeline();
    const { broker, ingest } = await running.scrape();
    expect(broker).toMatch(/^sensorpipe_broker_device_online\{device="dev-0"\} 1$/m);
    expect(broker).toMatch(/^sensorpipe_broker_device_online\{device="dev-1"\} 1$/m);
    expect(ingest).toMatch(/^sensorpipe_ingest_device_completeness_ratio\{device="dev-0"\} 1$/m);
    expect(ingest).toMatch(/^sensorpipe_ingest_device_missing_readings\{device="dev-1"\} 0$/m);
    // A device that goes away is 0, not gone.
    await running.publishers[1]!.close();
    await waitFor(async () => /^sensorpipe_broker_device_online\{device="dev-1"\} 0$/m.test(await running!.broker.metricsText()), 'dev-1 offline', 10_000);
  });

  it('serves no per-device series with SENSORPIPE_METRICS_PER_DEVICE=false, and the fleet-wide ones still', async () => {
    running = await startPipeline({ SENSORPIPE_METRICS_PER_DEVICE: 'false' });
    const scraped = await running.scrape();
    for (const [process, text] of Object.entries(scraped)) expect(text.split('\n').filter((line) => line.includes('device="')), process).toEqual([]);
    expect(scraped.broker).toMatch(/^sensorpipe_broker_devices_online 2$/m);
    expect(scraped.ingest).toMatch(/^sensorpipe_ingest_accepted_readings_total 2$/m);
    expect(scraped.ingest).not.toContain('sensorpipe_ingest_device_completeness_ratio');
    expect(scraped.broker).not.toContain('sensorpipe_broker_device_online');
  });

  // 127.0.0.2 is this machine too (all of 127.0.0.0/8 is loopback on Linux), but a socket bound to
  // 127.0.0.1 does not answer on it: the stand-in for "another container's address".
  it('listens on 127.0.0.1 only by default, and where SENSORPIPE_INGEST_METRICS_HOST says', async () => {
    running = await startPipeline();
    await expect(fetch(`http://127.0.0.2:${running.ingest.metricsPort}/metrics`)).rejects.toThrow();
    await running.close();
    running = undefined;
    running = await startPipeline({ SENSORPIPE_INGEST_METRICS_HOST: '0.0.0.0' });
    const response = await fetch(`http://127.0.0.2:${running.ingest.metricsPort}/metrics`);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('sensorpipe_ingest_received_total');
  });
});
