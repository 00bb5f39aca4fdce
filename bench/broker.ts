/**
 * Broker benchmark. Prints JSON:
 *  - messages/s delivered to 1 subscriber from 100 publishers, at QoS 0 and QoS 1, through
 *    (a) our broker: device logins, topic ACL, packet guard, each device's token bucket (at
 *        `--device-rate` msg/s, far above what a publisher sends here, so it counts every publish and
 *        throttles none: the JSON says how many it dropped, which must be 0) and device status; its
 *        durable queue (write-ahead log, SENSORPIPE_BROKER_WAL) on as by default;
 *    (b) the same broker with the durable queue off, in the same run, when this build's broker has
 *        that option (`walOption`): the cost of durability is (a) against (b);
 *    (c) a bare aedes with our broker's transport settings (TCP_NODELAY, write coalescing, the indexed
 *        in-memory persistence: bench/bare-broker.ts), and (d) Debian's Mosquitto;
 *    each with the broker process's CPU time per delivered message beside its msg/s;
 *  - 10,000 idle authenticated device connections to our broker (from 20 loopback addresses, 500 each,
 *    under the default per-address cap) and the broker process's RSS.
 * The QoS 1 subscriber is what ingest is: a persistent session (clean session off) subscribed at QoS 1,
 * so every message is queued for it, and with the durable queue on, logged before its PUBACK.
 * Each broker runs in its own child process, so its RSS and CPU are its own; the clients run here.
 * Publishers run closed-loop: at most WINDOW messages in flight end to end, so no broker is driven
 * into an unbounded queue (aedes has no QoS 0 flow control) and the number is sustainable throughput.
 * With `--repeats N` every measurement runs N times, the brokers in a rotating order within each
 * round; each figure is the median with its spread, and each ratio the median of the rounds' ratios.
 *
 *   npx tsx bench/broker.ts [--seconds 5] [--idle 10000] [--repeats 3] [--device-rate 5000] [--cpu-prof DIR]
 *   (--seconds 0 or --idle 0 skips that part)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { configSpecs, parseConfig } from '../core/config.ts';
import { Registry, saveRegistry, type DeviceCredentials } from '../core/registry.ts';
import { topics } from '../core/topics.ts';
import { freePort } from '../harness/ports.ts';
import { tempDir } from '../harness/tmp.ts';
import { argValue, brokerWalEnv, machine, printJson, processUsage } from './lib.ts';
import { connectPacket } from './loadgen.ts';
import { repeated, round, type Repeated } from './stats.ts';

const SELF = fileURLToPath(import.meta.url);
const PUBLISHERS = 100;
const WINDOW = 1000;
const INGEST_CLIENT_ID = 'sensorpipe-ingest';

// ---- child mode: run our broker and print its ports ------------------------------------------------

async function serve(registryPath: string, secrets: { admin: string; ingest: string }, env: Record<string, string>, deviceRate: number): Promise<void> {
  const { startBroker } = await import('../broker/index.ts');
  // `env` is SENSORPIPE_BROKER_WAL (or nothing): read by the same parser as `sensorpipe broker` reads its environment with.
  const defaults = parseConfig(configSpecs.broker, { argv: [], env }).config;
  const broker = await startBroker({
    // The bench's temporary folder is the data dir: nothing the broker keeps is left in the working directory.
    config: {
      ...defaults,
      dataDir: join(dirname(registryPath), `broker-${process.pid}`),
      mqttHost: '127.0.0.1',
      mqttPort: 0,
      wsPort: 0,
      brokerMetricsPort: 0,
      adminPassword: secrets.admin,
      ingestPassword: secrets.ingest,
      logLevel: 'warn',
      publishRate: deviceRate,
      publishBurst: deviceRate,
    },
    registryPath,
  });
  process.stdout.write(`${JSON.stringify({ port: broker.ports.mqtt, metrics: broker.ports.metrics })}\n`);
  process.on('SIGTERM', () => void broker.close().then(() => process.exit(0)));
}

// ---- parent mode ------------------------------------------------------------------------------------

type Kind = 'ours' | 'oursWalOff' | 'bareAedes' | 'mosquitto';
interface Running { port: number; pid: number; metricsPort?: number; stop(): Promise<void> }

function waitForPort(child: ChildProcess, name: string): Promise<{ port: number; metrics?: number }> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /\{"port":(\d+)(?:,"metrics":(\d+))?\}/.exec(out);
      if (match) resolve({ port: Number(match[1]), ...(match[2] === undefined ? {} : { metrics: Number(match[2]) }) });
    });
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code} before it was ready`)));
  });
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
    await exited;
    clearTimeout(timer);
  };
}

interface BrokerSetup { registryPath: string; secrets: { admin: string; ingest: string }; deviceRate: number; dir: string }

async function startNodeBroker(kind: 'ours' | 'oursWalOff' | 'bareAedes', setup: BrokerSetup): Promise<Running> {
  // --cpu-prof DIR: each Node broker writes V8 CPU profiles (one per thread) to DIR/<kind> when it
  // stops; open them in Chrome DevTools.
  const profileDir = argValue('cpu-prof', '');
  const profile = profileDir === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', join(profileDir, kind)];
  const args =
    kind === 'bareAedes'
      ? [join(dirname(SELF), 'bare-broker.ts')]
      : [SELF, '--serve', setup.registryPath, JSON.stringify(setup.secrets), JSON.stringify(brokerWalEnv(kind === 'ours' ? 'on' : 'off').env), String(setup.deviceRate)];
  const child = spawn(process.execPath, [...profile, '--import', 'tsx', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const { port, metrics } = await waitForPort(child, kind);
  return { port, pid: child.pid!, ...(metrics === undefined ? {} : { metricsPort: metrics }), stop: stopper(child) };
}

async function startMosquitto(dir: string): Promise<Running> {
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(conf, `user root\nlistener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nlog_type error\n`);
  const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Ready when a client can connect.
  for (let i = 0; ; i++) {
    try {
      const probe = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 1000 });
      await probe.endAsync();
      break;
    } catch (err) {
      if (i > 100) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { port, pid: child.pid!, stop: stopper(child) };
}

function startBrokerOf(kind: Kind, setup: BrokerSetup): Promise<Running> {
  return kind === 'mosquitto' ? startMosquitto(setup.dir) : startNodeBroker(kind, setup);
}

/** Publishes our broker's token bucket dropped (rate_limited*), from its /metrics; 0 for the others. */
async function rateLimitedDrops(broker: Running): Promise<number> {
  if (broker.metricsPort === undefined) return 0;
  const text = await (await fetch(`http://127.0.0.1:${broker.metricsPort}/metrics`)).text();
  let drops = 0;
  for (const match of text.matchAll(/^sensorpipe_broker_drops_total\{reason="rate_limited[a-z_]*"\} (\d+)/gm)) drops += Number(match[1]);
  return drops;
}

interface Creds { clientId: string; username?: string; password?: string }

async function throughput(broker: Running, qos: 0 | 1, seconds: number, publishers: Creds[], subscriber: Creds): Promise<{ deliveredPerSecond: number; delivered: number; brokerCpuMicrosPerMessage: number }> {
  const url = `mqtt://127.0.0.1:${broker.port}`;
  // At QoS 1 the subscriber is a persistent session, as ingest's is: every message is queued for it.
  const sub = await mqtt.connectAsync(url, { ...subscriber, reconnectPeriod: 0, clean: qos === 0 });
  let received = 0;
  sub.on('message', () => received++);
  await sub.subscribeAsync(topics.allTelemetry, { qos });
  const clients: MqttClient[] = await Promise.all(publishers.map((c) => mqtt.connectAsync(url, { ...c, reconnectPeriod: 0, clean: true })));
  const payload = JSON.stringify({ v: 1, pad: randomBytes(64).toString('base64') });
  let sent = 0;
  let running = true;
  // Publishers waiting for the window to open again.
  const waiting = new Set<() => void>();
  const wakeAll = () => {
    for (const resume of waiting) resume();
    waiting.clear();
  };
  sub.on('message', () => {
    if (waiting.size > 0 && sent - received < WINDOW / 2) wakeAll();
  });
  const publisher = async (client: MqttClient, topic: string) => {
    while (running) {
      if (sent - received >= WINDOW) {
        await new Promise<void>((resolve) => {
          const resume = () => {
            clearTimeout(timer);
            waiting.delete(resume);
            resolve();
          };
          const timer = setTimeout(resume, 200); // never wait forever on a lost message
          waiting.add(resume);
        });
        continue;
      }
      sent++;
      if (qos === 0) await new Promise<void>((resolve) => client.publish(topic, payload, { qos: 0 }, () => resolve()));
      else await client.publishAsync(topic, payload, { qos: 1 });
    }
  };
  // Warm up for a second, then measure.
  const loops = clients.map((client, i) => publisher(client, topics.telemetry(publishers[i]!.clientId)));
  await new Promise((r) => setTimeout(r, 1000));
  const startCount = received;
  const started = process.hrtime.bigint();
  const cpuBefore = (await processUsage(broker.pid)).cpuSeconds;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const delivered = received - startCount;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  const cpuSeconds = (await processUsage(broker.pid)).cpuSeconds - cpuBefore;
  running = false;
  wakeAll();
  await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, 5000))]);
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await sub.endAsync(true);
  // CPU time the broker process spent per delivered message (all its threads). On a shared, busy machine
  // it moves less than messages/s does (a broker that waits for a core loses throughput, not CPU time),
  // though it too rises when fewer messages share each turn of the event loop.
  return { deliveredPerSecond: Math.round(delivered / elapsed), delivered, brokerCpuMicrosPerMessage: Math.round((cpuSeconds / delivered) * 1e7) / 10 };
}

/** Opens idle device connections with raw sockets (an MQTT.js client per connection would dwarf the broker). */
async function idleConnections(port: number, devices: DeviceCredentials[]): Promise<{ accepted: number; refused: number; refusedBy: Record<string, number>; close(): void }> {
  const sockets: Socket[] = [];
  let accepted = 0;
  // Why a connection was not accepted: CONNACK return code, socket error code, or closed before a CONNACK.
  const refusedBy: Record<string, number> = {};
  const refuse = (reason: string) => { refusedBy[reason] = (refusedBy[reason] ?? 0) + 1; };
  let next = 0;
  const one = (credentials: DeviceCredentials, index: number) => new Promise<void>((resolve) => {
    const socket = netConnect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (index % 20)}` });
    sockets.push(socket);
    let settled = false;
    const settle = (outcome: string | undefined) => {
      if (settled) return;
      settled = true;
      if (outcome === undefined) accepted++;
      else refuse(outcome);
      resolve();
    };
    socket.on('error', (err: NodeJS.ErrnoException) => settle(`error_${err.code ?? err.message}`));
    socket.once('connect', () => socket.write(connectPacket(credentials.deviceId, credentials.deviceId, credentials.mqttPassword)));
    // TCP keeps no packet boundaries: the 4-byte CONNACK may come in more than one read.
    let received = Buffer.alloc(0);
    const onData = (data: Buffer) => {
      received = Buffer.concat([received, data]);
      if (received.length < 4) return;
      socket.off('data', onData);
      settle(received[0] !== 0x20 ? `first_packet_${received[0]}` : received[3] === 0 ? undefined : `connack_${received[3]}`);
    };
    socket.on('data', onData);
    socket.once('close', () => settle('closed_before_connack'));
  });
  await Promise.all(Array.from({ length: 200 }, async () => {
    while (next < devices.length) {
      const index = next++;
      await one(devices[index]!, index);
    }
  }));
  const refused = Object.values(refusedBy).reduce((a, b) => a + b, 0);
  return { accepted, refused, refusedBy, close: () => sockets.forEach((s) => s.destroy()) };
}

interface KindRun { perSecond: number; cpuMicrosPerMessage: number; rssMiB: number; rateLimitedDrops: number }

async function main(): Promise<void> {
  const debug = (msg: string) => process.env.BENCH_DEBUG && process.stderr.write(`${new Date().toISOString()} ${msg}\n`);
  const seconds = Number(argValue('seconds', '5'));
  const idleCount = Number(argValue('idle', '10000'));
  const repeats = Math.max(1, Number(argValue('repeats', '3')));
  const deviceRate = Number(argValue('device-rate', '5000'));
  const dir = await tempDir('sensorpipe-bench-broker-');
  const load = { loadavgBefore: loadavg().map((x) => Math.round(x * 100) / 100) };
  const walOption = brokerWalEnv(undefined).option;
  // Without the option, "durable queue off" would be the same broker again: it is left out.
  const kinds: Kind[] = walOption ? ['ours', 'oursWalOff', 'bareAedes', 'mosquitto'] : ['ours', 'bareAedes', 'mosquitto'];
  try {
    const registry = new Registry();
    const devices: DeviceCredentials[] = [];
    for (let i = 0; i < PUBLISHERS + idleCount; i++) devices.push(registry.add(`bench-${i}`));
    const registryPath = join(dir.path, 'registry.json');
    await saveRegistry(registryPath, registry);
    const secrets = { admin: randomBytes(16).toString('hex'), ingest: randomBytes(16).toString('hex') };
    const setup: BrokerSetup = { registryPath, secrets, deviceRate, dir: dir.path };
    const devicePublishers: Creds[] = devices.slice(0, PUBLISHERS).map((d) => ({ clientId: d.deviceId, username: d.deviceId, password: d.mqttPassword }));
    const anonymousPublishers: Creds[] = devicePublishers.map((d) => ({ clientId: d.clientId }));
    // The subscriber is ingest's service account, with ingest's client id (the others let anyone in: the id alone).
    const ingestSubscriber: Creds = { clientId: INGEST_CLIENT_ID, username: 'svc:ingest', password: secrets.ingest };

    const throughputResults: Record<string, unknown> = {};
    for (const qos of seconds > 0 ? ([0, 1] as const) : []) {
      const runs: Partial<Record<Kind, KindRun>>[] = [];
      for (let rep = 0; rep < repeats; rep++) {
        const thisRound: Partial<Record<Kind, KindRun>> = {};
        // A rotating order: drift on a shared machine does not always favour the same broker.
        const order = kinds.map((_, i) => kinds[(i + rep) % kinds.length]!);
        for (const kind of order) {
          debug(`qos ${qos} round ${rep + 1}: ${kind}`);
          const broker = await startBrokerOf(kind, setup);
          const ours = kind === 'ours' || kind === 'oursWalOff';
          const t = await throughput(broker, qos, seconds, ours ? devicePublishers : anonymousPublishers, ours ? ingestSubscriber : { clientId: INGEST_CLIENT_ID });
          const rss = (await processUsage(broker.pid)).rssBytes;
          const drops = await rateLimitedDrops(broker);
          await broker.stop();
          thisRound[kind] = { perSecond: t.deliveredPerSecond, cpuMicrosPerMessage: t.brokerCpuMicrosPerMessage, rssMiB: Math.round(rss / 2 ** 20), rateLimitedDrops: drops };
        }
        runs.push(thisRound);
      }
      const of = (kind: Kind) => ({
        perSecond: repeated(runs.map((r) => r[kind]?.perSecond)),
        cpuMicrosPerMessage: repeated(runs.map((r) => r[kind]?.cpuMicrosPerMessage)),
        rssMiB: repeated(runs.map((r) => r[kind]?.rssMiB)),
        rateLimitedDrops: runs.reduce((n, r) => n + (r[kind]?.rateLimitedDrops ?? 0), 0),
      });
      // Each ratio from the two brokers of the same round, then the median over the rounds.
      const ratio = (a: Kind, b: Kind): Repeated => repeated(runs.map((r) => (r[a] && r[b] ? round3(r[a].perSecond / r[b].perSecond) : null)));
      const result: Record<string, unknown> = Object.fromEntries(kinds.map((kind) => [kind, of(kind)]));
      result.ratios = {
        // Like for like: our broker against bare aedes, neither with a durable queue (when ours can turn it off).
        oursVsBareAedes: ratio(walOption ? 'oursWalOff' : 'ours', 'bareAedes'),
        oursDurableVsBareAedes: ratio('ours', 'bareAedes'),
        oursVsMosquitto: ratio('ours', 'mosquitto'),
        ...(walOption ? { durableQueueOnVsOff: ratio('ours', 'oursWalOff') } : {}),
      };
      result.offeredPerPublisherPerSecond = Math.round((of('ours').perSecond.median ?? 0) / PUBLISHERS);
      throughputResults[`qos${qos}`] = result;
    }

    let idleResult: Record<string, unknown> | undefined;
    if (idleCount > 0) {
      const rounds: { accepted: number; refused: number; refusedBy: Record<string, number>; connectSeconds: number; rssBefore: number; rssAfter: number }[] = [];
      for (let rep = 0; rep < repeats; rep++) {
        const ours = await startNodeBroker('ours', setup);
        const rssBefore = (await processUsage(ours.pid)).rssBytes;
        const started = Date.now();
        const idle = await idleConnections(ours.port, devices.slice(PUBLISHERS));
        const connectSeconds = (Date.now() - started) / 1000;
        await new Promise((r) => setTimeout(r, 2000)); // let status publishes and GC settle
        const rssAfter = (await processUsage(ours.pid)).rssBytes;
        idle.close();
        await ours.stop();
        rounds.push({ accepted: idle.accepted, refused: idle.refused, refusedBy: idle.refusedBy, connectSeconds, rssBefore, rssAfter });
      }
      const rss = repeated(rounds.map((r) => Math.round(r.rssAfter / 2 ** 20)));
      const accepted = Math.min(...rounds.map((r) => r.accepted));
      idleResult = {
        requested: idleCount,
        accepted,
        refused: Math.max(...rounds.map((r) => r.refused)),
        refusedBy: rounds.map((r) => r.refusedBy),
        connectSeconds: repeated(rounds.map((r) => r.connectSeconds)),
        brokerRssBeforeMiB: repeated(rounds.map((r) => Math.round(r.rssBefore / 2 ** 20))),
        brokerRssMiB: rss,
        targetRssMiB: 1024,
        withinTarget: (rss.median ?? Infinity) < 1024 && accepted === idleCount,
      };
    }

    const ratioOf = (qos: string) => ((throughputResults[qos] as { ratios?: { oursVsBareAedes?: Repeated } } | undefined)?.ratios?.oursVsBareAedes?.median ?? 0);
    printJson({
      benchmark: 'broker',
      machine: machine(),
      load: { ...load, loadavgAfter: loadavg().map((x) => Math.round(x * 100) / 100) },
      publishers: PUBLISHERS,
      subscribers: 1,
      subscriber: 'svc:ingest, QoS 0: clean session; QoS 1: persistent session (as ingest)',
      windowInFlight: WINDOW,
      measureSeconds: seconds,
      repeats,
      walOption,
      oursConfig: { deviceRatePerSecond: deviceRate, deviceBurst: deviceRate, durableQueue: walOption ? 'on (default) and off' : 'this build has no SENSORPIPE_BROKER_WAL option' },
      bareAedes: 'aedes 1.2 with our transport settings: TCP_NODELAY, write coalescing, indexed in-memory persistence; no auth, ACL, limits or durable queue',
      throughput: throughputResults,
      idleConnections: idleResult,
      targets: {
        basis: 'median over the rounds of ours (durable queue off when it can be) / bare aedes of the same round',
        qos0OursAtLeast90PercentOfBare: ratioOf('qos0') >= 0.9,
        qos1OursAtLeast90PercentOfBare: ratioOf('qos1') >= 0.9,
      },
    });
  } finally {
    await dir.remove();
  }
}

function round3(x: number): number {
  return round(x, 3);
}

if (process.argv[2] === '--serve') await serve(process.argv[3]!, JSON.parse(process.argv[4]!) as { admin: string; ingest: string }, JSON.parse(process.argv[5]!) as Record<string, string>, Number(process.argv[6]));
else await main();
