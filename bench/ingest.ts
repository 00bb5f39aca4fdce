/**
 * Ingest throughput and latency: devices → broker → ingest → store, each in its own process, for a set
 * time at a set rate, QoS 1, signatures on. Prints JSON: sent, acknowledged, stored (counted in the
 * store), lost, sustained readings/s, publish→live-feed latency p50/p99, CPU and RSS per process.
 *
 *   npx tsx bench/ingest.ts [--store influx|embedded] [--rate 10000] [--seconds 60] [--devices 100]
 *                           [--broker ours|bare] [--ingest ours|passthrough] [--warmup 5]
 *                           [--ingest-node-args ARGS]
 *
 * Latency percentiles (`publishToLiveMs`) leave out readings published in the first `--warmup` seconds:
 * there every process (devices, broker, ingest) still runs cold code, and the live feed lagged by 1–2 s
 * for a few seconds whichever ingest ran, the pass-through too. Those are reported on their own
 * (`publishToLiveWarmupMs`); every reading counts for sent, stored and lost. The machine's load average
 * before and after is printed too: on a shared machine it says how much the figures can be trusted.
 * `--ingest passthrough` runs bench/passthrough-ingest.ts instead: the verification-free baseline.
 * `--ingest-node-args` are extra node flags for the ingest process alone (split on spaces), e.g.
 * `--ingest-node-args "--cpu-prof --cpu-prof-dir=/tmp/prof"` to profile it (written when it exits;
 * Node 20 refuses --cpu-prof in NODE_OPTIONS).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { Registry, saveRegistry } from '../core/registry.ts';
import { VerifiedReadingsSchema } from '../core/schemas.ts';
import { topics } from '../core/topics.ts';
import { openStore } from '../store/index.ts';
import { startInfluxd, type InfluxServer } from '../harness/influxd.ts';
import { provision, signedPayload } from '../harness/publisher.ts';
import { freePort } from '../harness/ports.ts';
import { tempDir } from '../harness/tmp.ts';
import { argValue, machine, printJson, processUsage, summarize } from './lib.ts';

const storeKind = argValue('store', 'influx') as 'influx' | 'embedded';
const rate = Number(argValue('rate', '10000'));
const seconds = Number(argValue('seconds', '60'));
const deviceCount = Number(argValue('devices', '100'));
const root = new URL('..', import.meta.url).pathname;

function spawnNode(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => resolve(socket.destroy() !== undefined));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

const dir = await tempDir('sensorpipe-bench-');
let influx: InfluxServer | undefined;
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
// rate raised for the bench's fast devices; `--broker bare` uses a bare aedes instead (the baseline).
const brokerKind = argValue('broker', 'ours') as 'ours' | 'bare';
const mqttPort = await freePort();
const ingestPassword = 'bench-ingest-secret';
const broker =
  brokerKind === 'ours'
    ? spawnNode(['cli/bin.js', 'broker'], {
        SENSORPIPE_REGISTRY: registryPath,
        SENSORPIPE_MQTT_HOST: '127.0.0.1',
        SENSORPIPE_MQTT_PORT: String(mqttPort),
        SENSORPIPE_MQTT_WS_PORT: '0',
        SENSORPIPE_BROKER_METRICS_PORT: '0',
        SENSORPIPE_INGEST_PASSWORD: ingestPassword,
        SENSORPIPE_ADMIN_PASSWORD: 'bench-admin-secret',
        SENSORPIPE_DEVICE_PUBLISH_RATE: String(Math.ceil((rate / deviceCount) * 2)),
        SENSORPIPE_DEVICE_PUBLISH_BURST: '1000',
        SENSORPIPE_LOG_LEVEL: 'warn',
      })
    : spawnNode(['--import', 'tsx', 'bench/bare-broker.ts', String(mqttPort), '--indexed'], {});
await waitForPort(mqttPort);
const url = `mqtt://127.0.0.1:${mqttPort}`;
const metricsPort = await freePort();
const ingestEnv = { SENSORPIPE_INGEST_PASSWORD: ingestPassword, SENSORPIPE_DATA_DIR: dir.path, SENSORPIPE_REGISTRY: registryPath, SENSORPIPE_MQTT_URL: url, SENSORPIPE_INGEST_METRICS_PORT: String(metricsPort), SENSORPIPE_LOG_LEVEL: 'warn', ...storeEnv };
const ingestKind = argValue('ingest', 'ours') as 'ours' | 'passthrough';
const ingestNodeArgs = argValue('ingest-node-args', '').split(' ').filter((arg) => arg !== '');
const ingest = spawnNode([...ingestNodeArgs, ...(ingestKind === 'ours' ? ['cli/bin.js', 'ingest'] : ['--import', 'tsx', 'bench/passthrough-ingest.ts'])], ingestEnv);

/** Readings ingest has accepted so far, from its /metrics. */
async function acceptedReadings(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return Number(/^sensorpipe_ingest_accepted_readings_total (\d+)/m.exec(text)?.[1] ?? 0);
}

// The live feed: publish→live latency from each verified reading's own timestamp (= its publish time).
const warmupSeconds = Number(argValue('warmup', '5'));
const liveLatency: number[] = [];
const warmupLatency: number[] = [];
/** Readings with a timestamp before this are warm-up samples (set when sending starts). */
let measureFrom = Number.POSITIVE_INFINITY;
const live = await mqtt.connectAsync(url, { clientId: 'bench-live', username: 'svc:admin', password: 'bench-admin-secret' });
live.on('message', (_topic, payload) => {
  const message = VerifiedReadingsSchema.safeParse(JSON.parse(payload.toString()));
  if (message.success) for (const r of message.data.readings) (r.ts < measureFrom ? warmupLatency : liveLatency).push(Date.now() - r.ts);
});
await live.subscribeAsync(topics.allVerified, { qos: 0 });

const clients = await Promise.all(devices.map((d) => mqtt.connectAsync(url, { clientId: d.id, username: d.id, password: d.credentials.mqttPassword })));
await new Promise((resolve) => setTimeout(resolve, 2000)); // let ingest connect and subscribe

let sent = 0;
let acknowledged = 0;
const seq = new Array<number>(deviceCount).fill(0);
const lastTs = new Array<number>(deviceCount).fill(0);
const perDeviceInterval = (deviceCount / rate) * 1000;
const started = Date.now();
measureFrom = started + warmupSeconds * 1000;
const loadBefore = loadavg();
const usageBefore = { broker: await processUsage(broker.pid!), ingest: await processUsage(ingest.pid!), bench: await processUsage(process.pid) };
await new Promise<void>((resolve) => {
  const deadline = started + seconds * 1000;
  // One timer drives every device, so the offered rate holds even when a tick runs late.
  const tick = setInterval(() => {
    const now = Date.now();
    if (now >= deadline) {
      clearInterval(tick);
      resolve();
      return;
    }
    const due = Math.floor(((now - started) / 1000) * rate);
    while (sent < due) {
      const i = sent % deviceCount;
      const ts = Math.max(now, lastTs[i]! + 1);
      lastTs[i] = ts;
      const payload = signedPayload(devices[i]!, [{ seq: ++seq[i]!, ts, values: { temperature: 20 + (sent % 100) / 10, humidity: 40, pressure: 1013.25 } }]);
      clients[i]!.publish(topics.telemetry(devices[i]!.id), payload, { qos: 1 }, (err) => {
        if (!err) acknowledged++;
      });
      sent++;
    }
  }, Math.max(1, Math.min(10, perDeviceInterval)));
});
const sendSeconds = (Date.now() - started) / 1000;
// Ingest may still be working through what the broker holds: wait until it has taken every
// acknowledged reading (or gives up after 120 s), and count that time in the rate.
const catchUpDeadline = Date.now() + 120_000;
while ((await acceptedReadings().catch(() => 0)) < acknowledged && Date.now() < catchUpDeadline) await new Promise((resolve) => setTimeout(resolve, 250));
const elapsed = (Date.now() - started) / 1000;
await new Promise((resolve) => setTimeout(resolve, 1000)); // the last batch's write
const usageAfter = { broker: await processUsage(broker.pid!), ingest: await processUsage(ingest.pid!), bench: await processUsage(process.pid) };

await Promise.all(clients.map((c) => c.endAsync()));
await live.endAsync();
ingest.kill('SIGTERM');
await new Promise((resolve) => ingest.once('exit', resolve));
const store = await openStore({ dataDir: dir.path, influxUrl: influx?.url, influxDatabase: 'bench' });
const storedPoints = await store.count();
await store.close();
broker.kill('SIGTERM');
await influx?.close();
await dir.remove();

const metricsPerReading = 3;
const stored = Math.floor(storedPoints / metricsPerReading);
const cpu = (name: keyof typeof usageAfter) => Number(((usageAfter[name].cpuSeconds - usageBefore[name].cpuSeconds) / elapsed).toFixed(2));
printJson({
  bench: 'ingest',
  machine: machine(),
  store: storeKind,
  broker: brokerKind,
  ingest: ingestKind,
  offeredRate: rate,
  sendSeconds,
  secondsUntilAllAccepted: elapsed,
  devices: deviceCount,
  sent,
  acknowledged,
  stored,
  lost: acknowledged - stored,
  sustainedReadingsPerSecond: Math.round(stored / elapsed),
  publishToLiveMs: summarize(liveLatency),
  warmupSeconds,
  publishToLiveWarmupMs: summarize(warmupLatency),
  cpuCores: { broker: cpu('broker'), ingest: cpu('ingest'), loadGenerator: cpu('bench') },
  rssMiB: { broker: Math.round(usageAfter.broker.rssBytes / 2 ** 20), ingest: Math.round(usageAfter.ingest.rssBytes / 2 ** 20) },
  loadAverage: { before: loadBefore.map((l) => Number(l.toFixed(2))), after: loadavg().map((l) => Number(l.toFixed(2))) },
  targets: { readingsPerSecond: 10000, lost: 0, publishToLiveP99Ms: 100 },
});
process.exit(0);
