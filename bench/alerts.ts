/**
 * The alerts component's two figures (issue 19), each process on its own (the real `sensorpipe` command),
 * on this one machine. Prints JSON.
 *
 *   npx tsx bench/alerts.ts [--mode all|latency|throughput] [--crossings 50]
 *                           [--rates 5000,10000,30000] [--seconds 20] [--devices 1000]
 *
 * Latency ("fires within 2 s"): a signed device publishes a reading that crosses a threshold, through the
 * broker, ingest (embedded store), the verified feed and the alerts process, to a webhook receiver here;
 * the time from the publish to the receiver getting the event. One crossing at a time (the next only once
 * the previous arrived): `--crossings` of them, alternately firing and resolving (both are crossings).
 * Every event on the way is appended to the alert log and the outbox, fsynced, as in production.
 *
 * Throughput ("keeps up with the verified feed"): the feed is published here as ingest publishes it
 * (pipeline/readings/{device}, QoS 0, one reading a message, logged in as svc:ingest), from `--devices`
 * devices at each of `--rates` readings/s for `--seconds`, so that the alerts process is the part under
 * test rather than ingest (whose own capacity is bench/ingest.ts's). Five rules apply to every device
 * (above, below and rate on temperature, above on humidity, silent); the values never cross them, so the
 * work is evaluation, not events. A probe device in the same stream crosses its own rule twice a second;
 * its publish→webhook time under load is the lag (what a real crossing would wait behind the backlog).
 * Reported per rate: readings sent and received by the alerts process (its feed counter), evaluations/s,
 * the alerts process's CPU (cores, and µs per reading), its RSS peak, the broker's, the probe's latency,
 * and how long after the schedule ended the alerts process had taken every reading (catch-up).
 * `keptUp`: nothing lost, caught up within 2 s of the schedule's end, and probe p99 ≤ 2 s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { AlertEventSchema } from '../core/alerts.ts';
import { Registry, saveRegistry } from '../core/registry.ts';
import { topics } from '../core/topics.ts';
import { freePort } from '../harness/ports.ts';
import { DevicePublisher, provision } from '../harness/publisher.ts';
import { tempDir } from '../harness/tmp.ts';
import { argValue, machine, printJson, processUsage, stopChild, summarize, waitForPort } from './lib.ts';

const mode = argValue('mode', 'all');
const crossings = Number(argValue('crossings', '50'));
const rates = argValue('rates', '5000,10000,30000').split(',').map(Number);
const seconds = Number(argValue('seconds', '20'));
const deviceCount = Number(argValue('devices', '1000'));
const root = new URL('..', import.meta.url).pathname;
const CLI = join(root, 'cli/bin.js');
const INGEST_PASSWORD = 'bench-ingest-secret';
const ALERTS_PASSWORD = 'bench-alerts-secret';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const children: ChildProcess[] = [];
// A run that fails midway must not leave its processes behind.
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});

function spawnCli(command: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [CLI, command], { cwd: root, env: { ...process.env, SENSORPIPE_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}


async function metricSum(port: number, name: string, labels = ''): Promise<number | undefined> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const lines = text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `)).filter((line) => line.includes(labels));
    return lines.length === 0 ? undefined : lines.reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
  } catch {
    return undefined;
  }
}

/** A webhook receiver: calls `onEvent` with each event's id and arrival time (ms, performance clock). */
async function startReceiver(onEvent: (event: { device: string; rule: string; state: string }, at: number) => void): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      const at = performance.now();
      response.writeHead(200).end();
      const parsed = AlertEventSchema.safeParse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      if (parsed.success) onEvent(parsed.data, at);
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}/hook`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface Stack {
  mqttUrl: string;
  brokerPid: number;
  alertsPort: number;
  alertsPid: number;
  close(): Promise<void>;
}

/** Broker, optionally ingest, and alerts, as processes of their own, on a fresh data folder. */
async function startStack(options: { devices: number; rules: (receiverUrl: string) => string; receiverUrl: string; ingest: boolean }): Promise<Stack & { devices: ReturnType<typeof provision> }> {
  const dir = await tempDir('sensorpipe-bench-alerts-');
  const registry = new Registry();
  const devices = provision(registry, options.devices, 'dev');
  const registryPath = join(dir.path, 'registry.json');
  await saveRegistry(registryPath, registry);
  const rulesPath = join(dir.path, 'alert-rules.yaml');
  await writeFile(rulesPath, options.rules(options.receiverUrl));
  const [mqttPort, brokerMetricsPort, alertsPort, ingestMetricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
  const broker = spawnCli('broker', {
    SENSORPIPE_DATA_DIR: join(dir.path, 'broker'),
    SENSORPIPE_REGISTRY: registryPath,
    SENSORPIPE_MQTT_HOST: '127.0.0.1',
    SENSORPIPE_MQTT_PORT: String(mqttPort),
    SENSORPIPE_MQTT_WS_PORT: '0',
    SENSORPIPE_BROKER_METRICS_PORT: String(brokerMetricsPort),
    SENSORPIPE_INGEST_PASSWORD: INGEST_PASSWORD,
    SENSORPIPE_ALERTS_PASSWORD: ALERTS_PASSWORD,
  });
  await waitForPort(mqttPort);
  const ingest = options.ingest
    ? spawnCli('ingest', {
        SENSORPIPE_DATA_DIR: join(dir.path, 'ingest'),
        SENSORPIPE_REGISTRY: registryPath,
        SENSORPIPE_MQTT_URL: mqttUrl,
        SENSORPIPE_INGEST_PASSWORD: INGEST_PASSWORD,
        SENSORPIPE_INGEST_METRICS_PORT: String(ingestMetricsPort),
      })
    : undefined;
  if (ingest !== undefined) await waitForPort(ingestMetricsPort);
  const alerts = spawnCli('alerts', {
    SENSORPIPE_DATA_DIR: join(dir.path, 'alerts'),
    SENSORPIPE_REGISTRY: registryPath,
    SENSORPIPE_MQTT_URL: mqttUrl,
    SENSORPIPE_ALERTS_PASSWORD: ALERTS_PASSWORD,
    SENSORPIPE_ALERTS_PORT: String(alertsPort),
    SENSORPIPE_ALERT_RULES: rulesPath,
  });
  await waitForPort(alertsPort);
  for (let i = 0; i < 200; i++) {
    const ready = await fetch(`http://127.0.0.1:${alertsPort}/readyz`).then((r) => r.ok, () => false);
    if (ready) break;
    await sleep(50);
  }
  await sleep(500); // its subscription, after the connection /readyz reports
  return {
    devices,
    mqttUrl,
    brokerPid: broker.pid!,
    alertsPort,
    alertsPid: alerts.pid!,
    async close() {
      await stopChild(alerts, 20_000);
      if (ingest !== undefined) await stopChild(ingest, 20_000);
      await stopChild(broker, 20_000);
      await dir.remove();
    },
  };
}

// ---- latency: publish → webhook --------------------------------------------------------------------

async function latency(): Promise<unknown> {
  let pending: { state: string; resolve: (at: number) => void } | undefined;
  const receiver = await startReceiver((event, at) => {
    if (pending !== undefined && event.state === pending.state) pending.resolve(at);
  });
  const stack = await startStack({
    devices: 1,
    ingest: true,
    receiverUrl: receiver.url,
    rules: (url) => `rules:\n  - { id: hot, kind: above, metric: temperature, threshold: 30, clear: 28, severity: critical }\nwebhooks:\n  - { url: "${url}" }\n`,
  });
  const device = await DevicePublisher.connect(stack.mqttUrl, stack.devices[0]!);
  const samples: number[] = [];
  const timeouts: number[] = [];
  try {
    // A first crossing and back, not timed: the first use of every code path.
    for (let i = 0; i < crossings + 2; i++) {
      const state = i % 2 === 0 ? 'firing' : 'resolved';
      const arrived = new Promise<number>((resolve) => (pending = { state, resolve }));
      const sentAt = performance.now();
      await device.send({ temperature: state === 'firing' ? 35 : 20 });
      const at = await Promise.race([arrived, sleep(10_000).then(() => -1)]);
      pending = undefined;
      if (i < 2) continue;
      if (at < 0) timeouts.push(i);
      else samples.push(Math.round((at - sentAt) * 10) / 10);
      await sleep(50);
    }
  } finally {
    await device.close();
    await stack.close();
    await receiver.close();
  }
  const ms = summarize(samples);
  return { crossings: samples.length, timedOut: timeouts.length, ms, target: 'fires within 2 s (publish → webhook)', met: timeouts.length === 0 && ms.p99 !== null && ms.p99 <= 2000 };
}

// ---- throughput: the verified feed at high rates ------------------------------------------------------

const FLEET_RULES = (url: string) => `rules:
  - { id: hot, kind: above, metric: temperature, threshold: 80, clear: 75 }
  - { id: cold, kind: below, metric: temperature, threshold: -40, clear: -35 }
  - { id: climbing, kind: rate, metric: temperature, threshold: 100000, per: m, window: 1m }
  - { id: humid, kind: above, metric: humidity, threshold: 99, for: 30s }
  - { id: quiet, kind: silent, after: 10m }
  - { id: probe, kind: above, metric: probe, threshold: 0, selector: { device: dev-0 } }
webhooks:
  - { url: "${url}", rules: [probe] }
`;

async function throughput(): Promise<unknown[]> {
  let probeSent = new Map<string, number>(); // expected state → send time
  const probeSamples: number[] = [];
  const receiver = await startReceiver((event, at) => {
    const sentAt = probeSent.get(event.state);
    if (event.rule !== 'probe' || sentAt === undefined) return;
    probeSent.delete(event.state);
    probeSamples.push(Math.round((at - sentAt) * 10) / 10);
  });
  const stack = await startStack({ devices: deviceCount, ingest: false, receiverUrl: receiver.url, rules: FLEET_RULES });
  const feed = await mqtt.connectAsync(stack.mqttUrl, { clientId: 'bench-feed', username: 'svc:ingest', password: INGEST_PASSWORD, clean: true, reconnectPeriod: 0 });
  const ids = stack.devices.map((d) => d.id);
  const lastTs = new Map<string, number>();
  const topicOf = new Map(ids.map((id) => [id, topics.verified(id)]));
  let seq = 0;
  const message = (device: string, values: Record<string, number>): string => {
    const ts = Math.max(Date.now(), (lastTs.get(device) ?? 0) + 1);
    lastTs.set(device, ts);
    return JSON.stringify({ v: 1, device, readings: [{ seq: ++seq, ts, values }], meta: {}, verifiedAt: Date.now() });
  };
  const received = async () => (await metricSum(stack.alertsPort, 'sensorpipe_alerts_feed_messages_total', 'kind="verified"')) ?? 0;
  const results: unknown[] = [];
  try {
    // The alerts process's subscription is in place once it counts a message (/readyz says connected,
    // which comes a moment before): until then the feed would go nowhere and be counted as lost.
    for (let i = 0; (await received()) === 0; i++) {
      if (i > 300) throw new Error('the alerts process takes no feed');
      feed.publish(topicOf.get('dev-1')!, message('dev-1', { temperature: 20 }), { qos: 0 });
      await sleep(100);
    }
    for (const rate of rates) {
      probeSent = new Map();
      probeSamples.length = 0;
      const base = await received();
      const evaluationsBefore = (await metricSum(stack.alertsPort, 'sensorpipe_alerts_evaluations_total')) ?? 0;
      const alertsBefore = await processUsage(stack.alertsPid);
      const brokerBefore = await processUsage(stack.brokerPid);
      const selfBefore = process.cpuUsage();
      let rssPeak = alertsBefore.rssBytes;
      let brokerRssPeak = brokerBefore.rssBytes;
      const started = performance.now();
      let fleetSent = 0;
      let probesSent = 0;
      let probeState: 'firing' | 'resolved' = 'resolved';
      let nextProbe = 0;
      const tickMs = 10;
      // Open loop: every tick sends what the schedule says is due by now, round-robin over the devices.
      while (performance.now() - started < seconds * 1000) {
        const due = Math.floor(((performance.now() - started) / 1000) * rate);
        for (; fleetSent < due; fleetSent++) {
          const device = ids[fleetSent % ids.length]!;
          const t = 20 + 5 * Math.sin(fleetSent / 997);
          feed.publish(topicOf.get(device)!, message(device, { temperature: t, humidity: 50 + (fleetSent % 10) }), { qos: 0 });
        }
        if (performance.now() - started >= nextProbe) {
          nextProbe += 500;
          probeState = probeState === 'firing' ? 'resolved' : 'firing';
          probeSent.set(probeState, performance.now());
          feed.publish(topicOf.get('dev-0')!, message('dev-0', { probe: probeState === 'firing' ? 1 : -1 }), { qos: 0 });
          probesSent++;
          rssPeak = Math.max(rssPeak, (await processUsage(stack.alertsPid)).rssBytes);
          brokerRssPeak = Math.max(brokerRssPeak, (await processUsage(stack.brokerPid)).rssBytes);
        }
        await sleep(tickMs);
      }
      const scheduleEnd = performance.now();
      const sent = fleetSent + probesSent;
      const alertsAtEnd = await processUsage(stack.alertsPid);
      const brokerAtEnd = await processUsage(stack.brokerPid);
      const self = process.cpuUsage(selfBefore);
      // Catch-up: until the alerts process has taken every reading sent, or nothing moves for 5 s.
      let got = (await received()) - base;
      let lastProgress = performance.now();
      while (got < sent && performance.now() - lastProgress < 5000) {
        await sleep(100);
        const now = (await received()) - base;
        if (now > got) lastProgress = performance.now();
        got = now;
      }
      const catchUpSeconds = got >= sent ? Math.round((performance.now() - scheduleEnd) / 100) / 10 : null;
      await sleep(1000); // the last probe's event
      const evaluations = ((await metricSum(stack.alertsPort, 'sensorpipe_alerts_evaluations_total')) ?? 0) - evaluationsBefore;
      const elapsed = (scheduleEnd - started) / 1000;
      const cpuSeconds = alertsAtEnd.cpuSeconds - alertsBefore.cpuSeconds;
      const probe = summarize(probeSamples);
      const lost = sent - got;
      results.push({
        offeredPerSecond: rate,
        seconds: Math.round(elapsed * 10) / 10,
        sent,
        received: got,
        lost,
        receivedPerSecond: Math.round(got / elapsed),
        evaluationsPerSecond: Math.round(evaluations / elapsed),
        cpuCores: { alerts: Math.round((cpuSeconds / elapsed) * 100) / 100, broker: Math.round(((brokerAtEnd.cpuSeconds - brokerBefore.cpuSeconds) / elapsed) * 100) / 100, generator: Math.round(((self.user + self.system) / 1e6 / elapsed) * 100) / 100 },
        cpuMicrosPerReading: got > 0 ? Math.round((cpuSeconds * 1e6 * 10) / got) / 10 : null,
        rssMiB: { alertsPeak: Math.round(rssPeak / 1048576), alertsEnd: Math.round(alertsAtEnd.rssBytes / 1048576), brokerPeak: Math.round(brokerRssPeak / 1048576) },
        probeLatencyMs: probe,
        catchUpSeconds,
        keptUp: lost === 0 && catchUpSeconds !== null && catchUpSeconds <= 2 && probe.p99 !== null && probe.p99 <= 2000,
      });
      await sleep(3000); // the machine settles between rates
    }
  } finally {
    await feed.endAsync(true);
    await stack.close();
    await receiver.close();
  }
  return results;
}

const loadavgBefore = loadavg().map((x) => Math.round(x * 100) / 100);
const result: Record<string, unknown> = { machine: machine(), loadavgBefore, devices: deviceCount, rules: 'above, below, rate (temperature), above (humidity), silent per device; one probe rule' };
if (mode === 'all' || mode === 'latency') result.latency = await latency();
if (mode === 'all' || mode === 'throughput') result.throughput = await throughput();
result.loadavgAfter = loadavg().map((x) => Math.round(x * 100) / 100);
printJson(result);
process.exit(0);
