/**
 * Broker benchmark. Prints JSON:
 *  - messages/s delivered to 1 subscriber from 100 publishers, at QoS 0 and QoS 1, through
 *    (a) our broker (auth, ACL, packet guard, rate limiter and status all on; the per-device rate is
 *        raised so that it does not throttle the benchmark), (b) a bare aedes, (c) Debian's Mosquitto;
 *    with the ratios ours/bare and ours/mosquitto, and each broker's CPU time per delivered message;
 *  - 10,000 idle authenticated device connections to our broker (from 20 loopback addresses, 500 each,
 *    under the default per-address cap) and the broker process's RSS.
 * Each broker runs in its own child process, so its RSS and CPU are its own; the clients run here.
 * Publishers run closed-loop: at most WINDOW messages in flight end to end, so no broker is driven
 * into an unbounded queue (aedes has no QoS 0 flow control) and the number is sustainable throughput.
 *
 *   npx tsx bench/broker.ts [--seconds 5] [--idle 10000] [--cpu-prof DIR]   (--seconds 0 or --idle 0 skips that part)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
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
import { argValue, machine, printJson, processUsage } from './lib.ts';

const SELF = fileURLToPath(import.meta.url);
const PUBLISHERS = 100;
const WINDOW = 1000;

// ---- child mode: run one broker and print its port -------------------------------------------------

async function serve(kind: string, registryPath: string, adminPassword: string): Promise<void> {
  if (kind === 'ours') {
    const { startBroker } = await import('../broker/index.ts');
    const defaults = parseConfig(configSpecs.broker, { argv: [], env: {} }).config;
    const broker = await startBroker({
      // The bench's temporary folder is the data dir: nothing the broker keeps is left in the working directory.
      config: { ...defaults, dataDir: dirname(registryPath), mqttHost: '127.0.0.1', mqttPort: 0, wsPort: 0, brokerMetricsPort: 0, adminPassword, logLevel: 'warn', publishRate: 1e9, publishBurst: 1e9 },
      registryPath,
    });
    process.stdout.write(`${JSON.stringify({ port: broker.ports.mqtt })}\n`);
    process.on('SIGTERM', () => void broker.close().then(() => process.exit(0)));
  } else {
    const { Aedes } = await import('aedes');
    const broker = await Aedes.createBroker();
    const server = createServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
    process.on('SIGTERM', () => process.exit(0));
  }
}

// ---- parent mode ------------------------------------------------------------------------------------

interface Running { port: number; pid: number; stop(): Promise<void> }

function waitForPort(child: ChildProcess, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /\{"port":(\d+)\}/.exec(out);
      if (match) resolve(Number(match[1]));
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

async function startNodeBroker(kind: 'ours' | 'bare', registryPath: string, adminPassword: string): Promise<Running> {
  // --cpu-prof DIR: each Node broker writes V8 CPU profiles (one per thread) to DIR/ours or DIR/bare when it
  // stops; open them in Chrome DevTools.
  const profileDir = argValue('cpu-prof', '');
  const profile = profileDir === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', join(profileDir, kind)];
  const child = spawn(process.execPath, [...profile, '--import', 'tsx', SELF, '--serve', kind, registryPath, adminPassword], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await waitForPort(child, kind);
  return { port, pid: child.pid!, stop: stopper(child) };
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

interface Creds { clientId: string; username?: string; password?: string }

async function throughput(broker: Running, qos: 0 | 1, seconds: number, publishers: Creds[], subscriber: Creds): Promise<{ deliveredPerSecond: number; delivered: number; brokerCpuMicrosPerMessage: number }> {
  const url = `mqtt://127.0.0.1:${broker.port}`;
  const sub = await mqtt.connectAsync(url, { ...subscriber, reconnectPeriod: 0, clean: true });
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

function connectPacket(clientId: string, username: string, password: string): Buffer {
  const field = (s: string) => { const b = Buffer.from(s); const l = Buffer.alloc(2); l.writeUInt16BE(b.length); return Buffer.concat([l, b]); };
  const body = Buffer.concat([field('MQTT'), Buffer.from([4, 0xc2, 0x02, 0x58]), field(clientId), field(username), field(password)]); // keepalive 600 s
  const len: number[] = [];
  let n = body.length;
  do { let byte = n % 128; n = Math.floor(n / 128); if (n > 0) byte |= 0x80; len.push(byte); } while (n > 0);
  return Buffer.concat([Buffer.from([0x10, ...len]), body]);
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

async function main(): Promise<void> {
  const debug = (msg: string) => process.env.BENCH_DEBUG && process.stderr.write(`${new Date().toISOString()} ${msg}\n`);
  const seconds = Number(argValue('seconds', '5'));
  const idleCount = Number(argValue('idle', '10000'));
  const dir = await tempDir('sensorpipe-bench-broker-');
  const load = { loadavgBefore: loadavg().map((x) => Math.round(x * 100) / 100) };
  try {
    const registry = new Registry();
    const devices: DeviceCredentials[] = [];
    for (let i = 0; i < PUBLISHERS + idleCount; i++) devices.push(registry.add(`bench-${i}`));
    const registryPath = join(dir.path, 'registry.json');
    await saveRegistry(registryPath, registry);
    const adminPassword = randomBytes(16).toString('hex');
    const devicePublishers: Creds[] = devices.slice(0, PUBLISHERS).map((d) => ({ clientId: d.deviceId, username: d.deviceId, password: d.mqttPassword }));
    const anonymousPublishers: Creds[] = devicePublishers.map((d) => ({ clientId: d.clientId }));

    const results: Record<string, Record<string, number>> = {};
    for (const qos of seconds > 0 ? ([0, 1] as const) : []) {
      debug(`qos ${qos}: ours`);
      const ours = await startNodeBroker('ours', registryPath, adminPassword);
      debug('started');
      const o = await throughput(ours, qos, seconds, devicePublishers, { clientId: 'bench-sub', username: 'svc:admin', password: adminPassword });
      const oursRss = (await processUsage(ours.pid)).rssBytes;
      await ours.stop();
      debug('bare');
      const bare = await startNodeBroker('bare', registryPath, adminPassword);
      const b = await throughput(bare, qos, seconds, anonymousPublishers, { clientId: 'bench-sub' });
      await bare.stop();
      debug('mosquitto');
      const mosq = await startMosquitto(dir.path);
      const m = await throughput(mosq, qos, seconds, anonymousPublishers, { clientId: 'bench-sub' });
      await mosq.stop();
      results[`qos${qos}`] = {
        oursPerSecond: o.deliveredPerSecond,
        bareAedesPerSecond: b.deliveredPerSecond,
        mosquittoPerSecond: m.deliveredPerSecond,
        oursVsBareAedes: Math.round((o.deliveredPerSecond / b.deliveredPerSecond) * 1000) / 1000,
        oursVsMosquitto: Math.round((o.deliveredPerSecond / m.deliveredPerSecond) * 1000) / 1000,
        oursRssMiB: Math.round(oursRss / 2 ** 20),
        oursCpuMicrosPerMessage: o.brokerCpuMicrosPerMessage,
        bareAedesCpuMicrosPerMessage: b.brokerCpuMicrosPerMessage,
        mosquittoCpuMicrosPerMessage: m.brokerCpuMicrosPerMessage,
      };
    }

    let idleResult: Record<string, unknown> | undefined;
    if (idleCount > 0) {
      const ours = await startNodeBroker('ours', registryPath, adminPassword);
      const rssBefore = (await processUsage(ours.pid)).rssBytes;
      const started = Date.now();
      const idle = await idleConnections(ours.port, devices.slice(PUBLISHERS));
      const connectSeconds = (Date.now() - started) / 1000;
      await new Promise((r) => setTimeout(r, 2000)); // let status publishes and GC settle
      const rssAfter = (await processUsage(ours.pid)).rssBytes;
      idle.close();
      await ours.stop();
      idleResult = {
        requested: idleCount,
        accepted: idle.accepted,
        refused: idle.refused,
        refusedBy: idle.refusedBy,
        connectSeconds,
        brokerRssBeforeMiB: Math.round(rssBefore / 2 ** 20),
        brokerRssMiB: Math.round(rssAfter / 2 ** 20),
        targetRssMiB: 1024,
        withinTarget: rssAfter < 2 ** 30 && idle.accepted === idleCount,
      };
    }

    printJson({
      benchmark: 'broker',
      machine: machine(),
      load: { ...load, loadavgAfter: loadavg().map((x) => Math.round(x * 100) / 100) },
      publishers: PUBLISHERS,
      subscribers: 1,
      windowInFlight: WINDOW,
      measureSeconds: seconds,
      throughput: results,
      idleConnections: idleResult,
      targets: {
        qos0OursAtLeast90PercentOfBare: (results.qos0?.oursVsBareAedes ?? 0) >= 0.9,
        qos1OursAtLeast90PercentOfBare: (results.qos1?.oursVsBareAedes ?? 0) >= 0.9,
      },
    });
  } finally {
    await dir.remove();
  }
}

if (process.argv[2] === '--serve') await serve(process.argv[3]!, process.argv[4]!, process.argv[5]!);
else await main();
