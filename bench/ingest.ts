/**
 * Ingest throughput and latency: devices → broker → ingest → store, each in its own process, for a set
 * time at a set rate, QoS 1, signatures on. One run is one rung of bench/capacity.ts's ladder. Prints
 * JSON: offered, sent, acknowledged, stored (counted in the store), lost, stored per second, the
 * publish→live-feed latency, each process's CPU (also per stored reading) and RSS (peak and end).
 *
 *   npx tsx bench/ingest.ts [--store influx|embedded] [--rate 10000] [--seconds 60] [--devices 100]
 *                           [--broker ours|bare] [--ingest ours|passthrough] [--warmup 5 (or seconds/4)]
 *                           [--broker-wal on|off] [--window 1000] [--tick 5] [--latency-devices 10]
 *                           [--catch-up-max 300] [--ingest-node-args ARGS] [--per-message 1]
 *                           [--product-root DIR]
 *
 * The load generator (bench/loadgen.ts) builds, signs and encodes every reading before the timed phase
 * and writes them on an open-loop schedule over raw sockets; its CPU during the run is reported
 * (`cpuCores.loadGenerator`), and should be a small fraction of a core.
 *
 * Counting. `offered` = rate × seconds. A reading is `acknowledged` when the broker sent its PUBACK;
 * `heldOnDevices` were never sent because the device's window (`--window` unacknowledged readings) was
 * full — the broker held back PUBACKs. After the schedule ends the bench waits until ingest has accepted
 * every acknowledged reading (`catchUpSeconds`; it gives up after `--catch-up-max` seconds, or after 15 s
 * without progress: `caughtUp: false`), stops ingest (which flushes), and counts the store. `lost` is
 * exact: per device, the acknowledged readings (seq 1 … n, in PUBACK order) missing from the store (a
 * lower bound, said in `lostMethod`, should the broker ever acknowledge out of order).
 * `storedPerSecond` = stored / the scheduled seconds (what the pipeline absorbed of the offered
 * window); `storedPerSecondUntilCaughtUp` also counts the time it needed afterwards.
 *
 * `--product-root DIR` runs the broker and ingest of another checkout (bench/ab.ts uses it to measure an
 * older revision with this bench); everything else (load, counting, latency) is this one's.
 *
 * `--per-message K` puts K readings in each message (a device catching up after being offline): the
 * rate stays in readings/s, messages go out at rate / K, and `--window` counts messages (default
 * ⌈1000 / K⌉, so that about as many readings are in flight as with one reading a message).
 *
 * Latency. `publishToLiveMs` is from the time a reading was *due* (its place in the schedule) to its
 * arrival on the live feed (pipeline/readings/{device}), so it includes any wait in the generator or on
 * a full window. It is sampled on `--latency-devices` devices (a tenth of the fleet by default; the
 * subscriber would otherwise cost this process as much CPU as the generator), and leaves out readings
 * due in the first `--warmup` seconds, where every process still runs cold code (reported on their own
 * as `publishToLiveWarmupMs`).
 *
 * `--broker-wal on|off` sets SENSORPIPE_BROKER_WAL for the broker, when this build's broker has that
 * option (`brokerWal.option` says whether it does; without it the flag changes nothing). The broker's
 * `sensorpipe_broker_queued_messages` gauge (messages queued for persistent sessions), when it exists,
 * is sampled each second (`brokerQueuedMessages`). Other SENSORPIPE_BROKER_* variables in this process's
 * environment (e.g. SENSORPIPE_BROKER_QUEUE_HIGH / _LOW) reach the broker as they are.
 *
 * `--broker bare` runs bench/bare-broker.ts instead (the baseline); `--ingest passthrough` runs
 * bench/passthrough-ingest.ts (the verification-free baseline). `--ingest-node-args` are extra node flags
 * for the ingest process alone (split on spaces), e.g. `--ingest-node-args "--cpu-prof
 * --cpu-prof-dir=/tmp/prof"` to profile it (Node 20 refuses --cpu-prof in NODE_OPTIONS).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { Registry, saveRegistry } from '../core/registry.ts';
import { topics } from '../core/topics.ts';
import { openStore } from '../store/index.ts';
import { startInfluxd, type InfluxServer } from '../harness/influxd.ts';
import { provision } from '../harness/publisher.ts';
import { freePort } from '../harness/ports.ts';
import { tempDir } from '../harness/tmp.ts';
import { argValue, brokerWalEnv, machine, printJson, processUsage, stopChild, summarize, waitForPort } from './lib.ts';
import { METRICS_PER_READING, RawDevices, dueMsOf, planLoad } from './loadgen.ts';

const storeKind = argValue('store', 'influx') as 'influx' | 'embedded';
const rate = Number(argValue('rate', '10000'));
const seconds = Number(argValue('seconds', '60'));
const deviceCount = Number(argValue('devices', '100'));
// Default: 5 s, or a quarter of a shorter run (so that a short run still has latency samples).
const warmupSeconds = Number(argValue('warmup', String(Math.min(5, seconds / 4))));
const perMessage = Math.max(1, Math.round(Number(argValue('per-message', '1'))));
const window = Number(argValue('window', String(Math.ceil(1000 / perMessage))));
const tickMs = Number(argValue('tick', '5'));
const latencyDevices = Math.min(deviceCount, Number(argValue('latency-devices', String(Math.max(1, Math.round(deviceCount / 10))))));
const catchUpMaxSeconds = Number(argValue('catch-up-max', '300'));
const brokerKind = argValue('broker', 'ours') as 'ours' | 'bare';
const ingestKind = argValue('ingest', 'ours') as 'ours' | 'passthrough';
const walSetting = argValue('broker-wal', '') as '' | 'on' | 'off';
const root = new URL('..', import.meta.url).pathname;
const productCli = join(argValue('product-root', root), 'cli', 'bin.js');
const STALL_SECONDS = 15;

const children: ChildProcess[] = [];
let influx: InfluxServer | undefined;
// A run that fails midway must not leave its broker, ingest or influxd behind.
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  try {
    if (influx?.pid !== undefined) process.kill(influx.pid, 'SIGKILL');
  } catch {
    // It had already exited.
  }
});

function spawnNode(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return child;
}


const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const dir = await tempDir('sensorpipe-bench-');
const storeEnv: Record<string, string> = {};
if (storeKind === 'influx') {
  influx = await startInfluxd();
  storeEnv.SENSORPIPE_INFLUX_URL = influx.url;
  storeEnv.SENSORPIPE_INFLUX_DATABASE = 'bench';
}

const registry = new Registry();
const devices = provision(registry, deviceCount, 'bench');
const registryPath = join(dir.path, 'registry.json');
await saveRegistry(registryPath, registry);

// The product's broker (`sensorpipe broker`: device logins, ACL, limits), with the per-device publish
// rate raised for the bench's fast devices (twice their rate; a burst of a whole window, so that a
// device catching up after a late tick is not cut off); `--broker bare` uses a bare aedes instead.
const wal = brokerWalEnv(walSetting === '' ? undefined : walSetting);
const mqttPort = await freePort();
const brokerMetricsPort = await freePort();
const ingestPassword = 'bench-ingest-secret';
const broker =
  brokerKind === 'ours'
    ? spawnNode([productCli, 'broker'], {
        SENSORPIPE_DATA_DIR: join(dir.path, 'broker-data'),
        SENSORPIPE_REGISTRY: registryPath,
        SENSORPIPE_MQTT_HOST: '127.0.0.1',
        SENSORPIPE_MQTT_PORT: String(mqttPort),
        SENSORPIPE_MQTT_WS_PORT: '0',
        SENSORPIPE_BROKER_METRICS_PORT: String(brokerMetricsPort),
        SENSORPIPE_INGEST_PASSWORD: ingestPassword,
        SENSORPIPE_ADMIN_PASSWORD: 'bench-admin-secret',
        SENSORPIPE_DEVICE_PUBLISH_RATE: String(Math.ceil((rate / perMessage / deviceCount) * 2)),
        SENSORPIPE_DEVICE_PUBLISH_BURST: String(Math.max(1000, window)),
        SENSORPIPE_LOG_LEVEL: 'warn',
        ...wal.env,
      })
    : spawnNode(['--import', 'tsx', 'bench/bare-broker.ts', String(mqttPort)], {});
await waitForPort(mqttPort);
const url = `mqtt://127.0.0.1:${mqttPort}`;
const metricsPort = await freePort();
const ingestEnv = { SENSORPIPE_INGEST_PASSWORD: ingestPassword, SENSORPIPE_DATA_DIR: dir.path, SENSORPIPE_REGISTRY: registryPath, SENSORPIPE_MQTT_URL: url, SENSORPIPE_INGEST_METRICS_PORT: String(metricsPort), SENSORPIPE_LOG_LEVEL: 'warn', ...storeEnv };
const ingestNodeArgs = argValue('ingest-node-args', '').split(' ').filter((arg) => arg !== '');
const ingest = spawnNode([...ingestNodeArgs, ...(ingestKind === 'ours' ? [productCli, 'ingest'] : ['--import', 'tsx', 'bench/passthrough-ingest.ts'])], ingestEnv);

async function metricsText(port: number): Promise<string | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
    return await response.text();
  } catch {
    return undefined;
  }
}
const metricValue = (text: string | undefined, name: string): number | undefined => {
  const match = text === undefined ? null : new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)`, 'm').exec(text);
  return match === null ? undefined : Number(match[1]);
};

/** Readings ingest has accepted so far, from its /metrics. */
async function acceptedReadings(): Promise<number | undefined> {
  return metricValue(await metricsText(metricsPort), 'sensorpipe_ingest_accepted_readings_total');
}

// Build, sign and encode every reading now, before anything is timed.
if (perMessage === 1 && rate / deviceCount > 1000) process.stderr.write(`ingest bench: ${rate / deviceCount} readings/s per device: over 1 per ms, their timestamps run ahead of their due times (--devices ${Math.ceil(rate / 1000)} or more avoids it)\n`);
const plan = planLoad(devices, rate, seconds, { perMessage });

// The live feed, sampled on the first `latencyDevices` devices: from each reading's due time to its arrival.
const liveLatency: number[] = [];
const warmupLatency: number[] = [];
let runStartedAt = Number.POSITIVE_INFINITY;
const deviceIndex = new Map(devices.map((d, j) => [d.id, j]));
const live = await mqtt.connectAsync(url, { clientId: 'bench-live', username: 'svc:admin', password: 'bench-admin-secret', reconnectPeriod: 1000 });
live.on('message', (_topic, payload) => {
  const now = Date.now();
  let message: { device?: unknown; readings?: { seq?: unknown }[] };
  try {
    message = JSON.parse(payload.toString()) as typeof message;
  } catch {
    return;
  }
  const j = typeof message.device === 'string' ? deviceIndex.get(message.device) : undefined;
  if (j === undefined || !Array.isArray(message.readings)) return;
  for (const r of message.readings) {
    if (typeof r.seq !== 'number') continue;
    const dueMs = dueMsOf(plan, j, r.seq);
    (dueMs < warmupSeconds * 1000 ? warmupLatency : liveLatency).push(Math.round(now - (runStartedAt + dueMs)));
  }
});
await live.subscribeAsync(devices.slice(0, latencyDevices).map((d) => topics.verified(d.id)), { qos: 0 });

const fleet = await RawDevices.connect(mqttPort, devices);
// Ingest is up and subscribed once its /metrics answers; then a moment for its subscription to settle.
for (let i = 0; i < 300 && (await acceptedReadings()) === undefined; i++) await sleep(100);
await sleep(1000);

// Sampled every second through the run: RSS peaks and the broker's queue.
const peaks = { brokerRss: 0, ingestRss: 0, brokerQueued: undefined as number | undefined, ingestUnacked: undefined as number | undefined };
const sampler = setInterval(() => {
  void (async () => {
    const [b, i] = await Promise.all([processUsage(broker.pid!).catch(() => undefined), processUsage(ingest.pid!).catch(() => undefined)]);
    peaks.brokerRss = Math.max(peaks.brokerRss, b?.rssBytes ?? 0);
    peaks.ingestRss = Math.max(peaks.ingestRss, i?.rssBytes ?? 0);
    const queued = brokerKind === 'ours' ? metricValue(await metricsText(brokerMetricsPort), 'sensorpipe_broker_queued_messages') : undefined;
    if (queued !== undefined) peaks.brokerQueued = Math.max(peaks.brokerQueued ?? 0, queued);
    const unacked = metricValue(await metricsText(metricsPort), 'sensorpipe_ingest_unacknowledged_messages');
    if (unacked !== undefined) peaks.ingestUnacked = Math.max(peaks.ingestUnacked ?? 0, unacked);
  })();
}, 1000);

const loadBefore = loadavg();
const usageBefore = { broker: await processUsage(broker.pid!), ingest: await processUsage(ingest.pid!), bench: await processUsage(process.pid) };
const stats = await fleet.run(plan, { tickMs, window, drainMs: 60_000, onStart: (at) => (runStartedAt = at) });
const usageAfterSend = { bench: await processUsage(process.pid) };
const sendEndedAt = Date.now();

// Ingest may still be working through what the broker holds: wait until it has taken every
// acknowledged reading, while it makes progress.
let caughtUp = false;
let lastProgress = { count: -1, at: Date.now() };
for (;;) {
  const accepted = (await acceptedReadings()) ?? 0;
  if (accepted >= stats.acknowledged) {
    caughtUp = true;
    break;
  }
  if (accepted > lastProgress.count) lastProgress = { count: accepted, at: Date.now() };
  if (Date.now() - lastProgress.at > STALL_SECONDS * 1000 || Date.now() - sendEndedAt > catchUpMaxSeconds * 1000) break;
  await sleep(100);
}
const catchUpSeconds = (Date.now() - sendEndedAt) / 1000;
const usageAfter = { broker: await processUsage(broker.pid!), ingest: await processUsage(ingest.pid!) };
const elapsedSeconds = (Date.now() - stats.startedAt) / 1000;
const brokerMetrics = await metricsText(brokerMetricsPort);
const queuedAtEnd = metricValue(brokerMetrics, 'sensorpipe_broker_queued_messages');
clearInterval(sampler);
await sleep(500); // the live feed of the last batch

await fleet.close();
await live.endAsync(true);
await stopChild(ingest); // flushes its last batch
const store = await openStore({ dataDir: dir.path, influxUrl: influx?.url, influxDatabase: 'bench' });
const storedPoints = await store.count();
// Exact loss: per device, its acknowledged readings are seq 1 … n (PUBACKs come in order), with
// increasing timestamps; count the device's points up to the last acknowledged one. Should PUBACKs come
// out of order, count up to the last reading sent instead: a lower bound, exact when every reading sent
// was acknowledged (`lostMethod` says which).
let lost = 0;
const lostMethod = stats.outOfOrderAcks === 0 ? 'exact' : 'lower bound (PUBACKs out of order)';
for (let j = 0; j < deviceCount; j++) {
  const acked = stats.ackedPerDevice[j]!;
  if (acked === 0) continue;
  const upTo = stats.outOfOrderAcks === 0 ? acked : stats.sentPerDevice[j]!;
  // The next message's readings have larger timestamps than this one's last: count up to it.
  const points = await store.count({ device: devices[j]!.id, to: plan.devices[j]!.ts[upTo - 1]! + 1 });
  lost += Math.max(0, acked * perMessage - Math.floor(points / METRICS_PER_READING));
}
await store.close();
await stopChild(broker);
await influx?.close();
influx = undefined;
await dir.remove();

const stored = Math.floor(storedPoints / METRICS_PER_READING);
const round = (x: number, digits = 2) => Number(x.toFixed(digits));
const cpuSeconds = (name: 'broker' | 'ingest') => usageAfter[name].cpuSeconds - usageBefore[name].cpuSeconds;
const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
printJson({
  bench: 'ingest',
  machine: machine(),
  store: storeKind,
  broker: brokerKind,
  brokerWal: { requested: walSetting || 'default', option: wal.option, env: wal.env },
  ingest: ingestKind,
  productRoot: argValue('product-root', '') || null,
  offeredRate: rate,
  seconds,
  devices: deviceCount,
  readingsPerMessage: perMessage,
  window,
  tickMs,
  loadGenerator: { prebuilt: true, buildSeconds: round(plan.buildSeconds), maxLagMs: stats.maxLagMs, cpuCoresDuringSend: round((usageAfterSend.bench.cpuSeconds - usageBefore.bench.cpuSeconds) / stats.sendSeconds) },
  offered: stats.offered,
  sent: stats.sent,
  acknowledged: stats.acknowledged,
  heldOnDevices: stats.heldOnDevices,
  unacknowledgedAtEnd: stats.unacknowledgedAtEnd,
  deviceDisconnects: stats.disconnects,
  stored,
  lost,
  lostMethod,
  outOfOrderAcks: stats.outOfOrderAcks,
  caughtUp,
  catchUpSeconds: round(catchUpSeconds, 1),
  storedPerSecond: Math.round(stored / seconds),
  storedPerSecondUntilCaughtUp: Math.round(stored / elapsedSeconds),
  publishToLiveMs: summarize(liveLatency),
  latencySampleDevices: latencyDevices,
  warmupSeconds,
  publishToLiveWarmupMs: summarize(warmupLatency),
  cpuCores: { broker: round(cpuSeconds('broker') / elapsedSeconds), ingest: round(cpuSeconds('ingest') / elapsedSeconds), loadGenerator: round((usageAfterSend.bench.cpuSeconds - usageBefore.bench.cpuSeconds) / stats.sendSeconds) },
  cpuMicrosPerReading: stored > 0 ? { broker: round((cpuSeconds('broker') / stored) * 1e6, 1), ingest: round((cpuSeconds('ingest') / stored) * 1e6, 1) } : null,
  rssMiB: {
    broker: { peak: mib(Math.max(peaks.brokerRss, usageAfter.broker.rssBytes)), end: mib(usageAfter.broker.rssBytes) },
    ingest: { peak: mib(Math.max(peaks.ingestRss, usageAfter.ingest.rssBytes)), end: mib(usageAfter.ingest.rssBytes) },
  },
  brokerQueuedMessages: peaks.brokerQueued === undefined && queuedAtEnd === undefined ? null : { peak: peaks.brokerQueued ?? null, end: queuedAtEnd ?? null },
  ingestUnacknowledgedPeak: peaks.ingestUnacked ?? null,
  loadAverage: { before: loadBefore.map((l) => round(l)), after: loadavg().map((l) => round(l)) },
  targets: { readingsPerSecond: 10000, lost: 0, publishToLiveP99Ms: 100 },
});
process.exit(0);
