/**
 * "A receiver that is down loses nothing", through a crash: a real `sensorpipe alerts` process (a child,
 * on a real broker, ingest and store) is killed with SIGKILL after an event reached the alert log and
 * before it reached the webhook's outbox. Started again on the same data folder, the alerts component
 * delivers that event to the receiver, once: not again on the next change, nor after another restart.
 */
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningAlerts } from '../../alerts/index.ts';
import { outboxFileOf } from '../../alerts/outbox.ts';
import { parseEventLines } from '../../alerts/event-lines.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { DevicePublisher, waitFor } from '../../harness/publisher.ts';
import { ALERTS_PASSWORD, startTestAlerts, WebhookReceiver } from './helpers.ts';

const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
let pipeline: TestPipeline;
let publisher: DevicePublisher;
let alerts: RunningAlerts | undefined;
const receiver = new WebhookReceiver();

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 1, broker: { alertsPassword: ALERTS_PASSWORD } });
  await receiver.start();
  publisher = await DevicePublisher.connect(pipeline.broker.url, pipeline.devices[0]!);
}, 60_000);

afterAll(async () => {
  await alerts?.close();
  await publisher?.close();
  await receiver.stop();
  await pipeline?.close();
});

it('an event logged but not queued when the process was killed is delivered after the restart, once', async () => {
  const dataDir = join(pipeline.dir.path, 'alerts-data');
  const rulesPath = join(pipeline.dir.path, 'rules.yaml');
  const device = pipeline.devices[0]!.id;
  await writeFile(rulesPath, `rules:\n  - { id: hot, kind: above, metric: temperature, threshold: 30, clear: 28 }\nwebhooks:\n  - { url: "${receiver.url}" }\n`);
  const env = {
    SENSORPIPE_DATA_DIR: dataDir,
    SENSORPIPE_MQTT_URL: pipeline.broker.url,
    SENSORPIPE_ALERTS_PASSWORD: ALERTS_PASSWORD,
    SENSORPIPE_ALERTS_PORT: '0',
    SENSORPIPE_ALERT_RULES: rulesPath,
    SENSORPIPE_REGISTRY: pipeline.registryPath,
    SENSORPIPE_LOG_LEVEL: 'info',
  };
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`the alerts child exited\n${stderr.slice(-3000)}`);
    return stderr.includes('"alerts running"');
  }, 'the alerts child to run', 30_000);

  // Sent until the child dies: one sent before its subscription is in place would not be seen.
  let signal: NodeJS.Signals | null | undefined;
  void exited.then((s) => (signal = s));
  await waitFor(async () => {
    if (signal === undefined) await publisher.send({ temperature: 35 });
    return signal !== undefined;
  }, 'the alerts child to fire and be killed', 30_000, 200);
  expect(signal, stderr.slice(-3000)).toBe('SIGKILL');

  // The crash state: the event is in the log, the outbox never took it, the receiver never saw it.
  const logged = parseEventLines(await readFile(join(dataDir, 'alerts', 'alerts.log'), 'utf8')).events;
  expect(logged.map((e) => [e.device, e.rule, e.state])).toEqual([[device, 'hot', 'firing']]);
  const outbox = outboxFileOf(join(dataDir, 'alerts'), receiver.url);
  expect(await readFile(outbox, 'utf8').catch(() => '')).toBe('');
  expect(receiver.arrivals).toBe(0);

  alerts = await startTestAlerts({ broker: pipeline.broker, dataDir, registryPath: pipeline.registryPath, rulesPath });
  await waitFor(() => receiver.events.length === 1, 'the logged event delivered after the restart', 15_000);
  expect(receiver.events[0]!.id).toBe(logged[0]!.id);

  // Once: the next change follows it alone (delivery is in order, so a second copy would come first).
  await publisher.send({ temperature: 20 });
  await waitFor(() => receiver.events.length >= 2, 'the resolved event', 15_000);
  expect(receiver.events.map((e) => e.state)).toEqual(['firing', 'resolved']);

  // And not after another restart either: the outbox remembers what it took, though compacted empty.
  await alerts.close();
  expect(await readFile(outbox, 'utf8')).toBe('');
  alerts = await startTestAlerts({ broker: pipeline.broker, dataDir, registryPath: pipeline.registryPath, rulesPath });
  await publisher.send({ temperature: 40 });
  await waitFor(() => receiver.events.length >= 3, 'the third event', 15_000);
  expect(receiver.events.map((e) => e.state)).toEqual(['firing', 'resolved', 'firing']);
  expect(receiver.arrivals).toBe(3);
}, 90_000);
