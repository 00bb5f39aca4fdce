/**
 * Simulator benchmark (issue 4): 10,000 simulated devices, one reading per 10 s each, all in one
 * simulator process, against a broker that holds 10,000 connections. Prints JSON: the simulator's CPU
 * (fraction of one core) and peak RSS over a steady window that starts once every device is connected
 * and one interval has passed, readings sent and acknowledged per second, and the broker's CPU and RSS
 * for context. Targets: under one core and under 1.5 GiB.
 *
 * The simulator runs `startFleet` (what `sensorpipe sim` runs) in a child process, so its numbers are
 * its own; the broker is `sensorpipe broker` (devices provisioned in its registry; the per-address
 * connection cap raised, since every device connects from 127.0.0.1) or Debian's Mosquitto, in another.
 *
 *   npx tsx bench/sim.ts [--devices 10000] [--interval 10s] [--seconds 60] [--broker ours|mosquitto]
 *                        [--profile mixed] [--faults ''] [--cpu-prof DIR]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { durationMs } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { parseFaults, provisionFleet, startFleet, type FleetOptions } from '../firmware-sim/index.ts';
import { freePort } from '../harness/ports.ts';
import { tempDir } from '../harness/tmp.ts';
import { argValue, machine, printJson, processUsage } from './lib.ts';

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Totals {
  connected: number;
  sent: number;
  acked: number;
  buffered: number;
}

type SimulatorOptions = Omit<FleetOptions, 'logger' | 'faults'> & { faults: string };

// ---- child mode: the simulator, answering "totals" and "stop" over IPC -----------------------------

async function simulate(options: SimulatorOptions): Promise<void> {
  const fleet = await startFleet({ ...options, faults: parseFaults(options.faults), logger: createLogger({ level: 'warn' }) });
  // Totals straight from the devices: fleet.summary() would copy 10,000 reports per question.
  const totals = (): Totals => {
    const t = { connected: 0, sent: 0, acked: 0, buffered: 0 };
    for (const d of fleet.devices) {
      const r = d.report();
      t.connected += d.connected ? 1 : 0;
      t.sent += r.sent;
      t.acked += r.acked;
      t.buffered += r.buffered;
    }
    return t;
  };
  process.on('message', (message: string) => {
    if (message === 'totals') process.send!({ totals: totals() });
    // Forced: 10,000 graceful goodbyes are not what is measured. Exiting normally writes a --cpu-prof.
    if (message === 'stop') void fleet.stop(false).then(() => process.exit(0));
  });
  process.send!({ ready: true });
}

// ---- parent mode ------------------------------------------------------------------------------------

function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => (Date.now() > deadline ? reject(new Error(`nothing listens on ${port}`)) : setTimeout(attempt, 100)));
    };
    attempt();
  });
}

function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  return exited.finally(() => clearTimeout(timer));
}

async function startBroker(kind: string, dir: string, registryPath: string): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  let child: ChildProcess;
  if (kind === 'mosquitto') {
    const conf = join(dir, 'mosquitto.conf');
    // Devices send their username and password; with no password file, anonymous access lets them in.
    await writeFile(conf, `user root\nlistener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\n`);
    child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  } else {
    child = spawn(process.execPath, ['cli/bin.js', 'broker'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        ...process.env,
        SENSORPIPE_DATA_DIR: dir,
        SENSORPIPE_REGISTRY: registryPath,
        SENSORPIPE_MQTT_HOST: '127.0.0.1',
        SENSORPIPE_MQTT_PORT: String(port),
        SENSORPIPE_MQTT_WS_PORT: '0',
        SENSORPIPE_BROKER_METRICS_PORT: '0',
        // The whole fleet connects from 127.0.0.1: above the default cap of 1,000 per address.
        SENSORPIPE_MQTT_MAX_CONNECTIONS_PER_ADDRESS: '100000',
        SENSORPIPE_LOG_LEVEL: 'warn',
      },
    });
  }
  await waitForPort(port);
  return { url: `mqtt://127.0.0.1:${port}`, process: child };
}

/** Peak RSS of a process so far (VmHWM), from /proc (Linux). */
async function peakRssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
}

async function main(): Promise<void> {
  const devices = Number(argValue('devices', '10000'));
  const intervalMs = durationMs.parse(argValue('interval', '10s'));
  const seconds = Number(argValue('seconds', '60'));
  const brokerKind = argValue('broker', 'ours');
  const profile = argValue('profile', 'mixed') as FleetOptions['profile'];
  const faults = argValue('faults', '');
  const cpuProfDir = argValue('cpu-prof', '');
  const loadavgBefore = loadavg().map((x) => Math.round(x * 100) / 100);
  const dir = await tempDir('sensorpipe-bench-sim-');
  const children: ChildProcess[] = [];
  try {
    const registryPath = join(dir.path, 'registry.json');
    const stateDir = join(dir.path, 'sim');
    // Provisioned before the broker starts, so that it knows every device from its first connection.
    await provisionFleet({ devices, registryPath, stateDir, profile });
    const broker = await startBroker(brokerKind, dir.path, registryPath);
    children.push(broker.process);

    const options: SimulatorOptions = { url: broker.url, devices, intervalMs, profile, seed: 1, faults, stateDir, registryPath, bufferLimit: 10_000, maxBatch: 100 };
    const nodeArgs = ['--import', 'tsx', ...(cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfDir] : [])];
    const sim = spawn(process.execPath, [...nodeArgs, SELF, '--simulate', JSON.stringify(options)], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(sim);
    const replies: ((message: { totals?: Totals; ready?: boolean }) => void)[] = [];
    sim.on('message', (message: { totals?: Totals; ready?: boolean }) => replies.shift()?.(message));
    const next = () => new Promise<{ totals?: Totals; ready?: boolean }>((resolve) => replies.push(resolve));
    const totals = async (): Promise<Totals> => {
      const reply = next();
      sim.send('totals');
      return (await reply).totals!;
    };
    const started = Date.now();
    await next(); // ready: every device started connecting
    let connected = 0;
    while ((connected = (await totals()).connected) < devices) {
      if (Date.now() - started > 300_000) throw new Error(`only ${connected} of ${devices} devices connected after 300 s`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const connectSeconds = (Date.now() - started) / 1000;
    // One interval more: every device is past its random first delay and reading at its own pace.
    await new Promise((resolve) => setTimeout(resolve, intervalMs));

    const simPid = sim.pid!;
    const brokerPid = broker.process.pid!;
    const before = { sim: await processUsage(simPid), broker: await processUsage(brokerPid), totals: await totals(), at: process.hrtime.bigint() };
    let peakRss = before.sim.rssBytes;
    let minConnected = before.totals.connected;
    const windowEnd = Date.now() + seconds * 1000;
    while (Date.now() < windowEnd) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000, Math.max(0, windowEnd - Date.now()))));
      peakRss = Math.max(peakRss, (await processUsage(simPid)).rssBytes);
      minConnected = Math.min(minConnected, (await totals()).connected);
    }
    const after = { sim: await processUsage(simPid), broker: await processUsage(brokerPid), totals: await totals(), at: process.hrtime.bigint() };
    const elapsed = Number(after.at - before.at) / 1e9;
    const lifetimePeakRss = await peakRssBytes(simPid);
    const simCores = (after.sim.cpuSeconds - before.sim.cpuSeconds) / elapsed;
    const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;
    const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

    sim.send('stop');
    await Promise.race([new Promise<void>((resolve) => sim.once('exit', () => resolve())), new Promise((resolve) => setTimeout(resolve, 30_000))]);
    printJson({
      benchmark: 'sim',
      machine: machine(),
      load: { loadavgBefore, loadavgAfter: loadavg().map((x) => Math.round(x * 100) / 100) },
      broker: brokerKind,
      devices,
      intervalMs,
      profile,
      faults: faults || null,
      connectSeconds,
      measureSeconds: round(elapsed, 1),
      simulator: {
        cpuCores: round(simCores),
        peakRssMiB: mib(peakRss),
        rssMiBAtEnd: mib(after.sim.rssBytes),
        lifetimePeakRssMiB: mib(lifetimePeakRss), // includes the connection storm at start
        minConnectedInWindow: minConnected,
      },
      readings: {
        expectedPerSecond: round((devices * 1000) / intervalMs, 1),
        sentPerSecond: round((after.totals.sent - before.totals.sent) / elapsed, 1),
        ackedPerSecond: round((after.totals.acked - before.totals.acked) / elapsed, 1),
        bufferedAtEnd: after.totals.buffered,
      },
      brokerProcess: { cpuCores: round((after.broker.cpuSeconds - before.broker.cpuSeconds) / elapsed), rssMiB: mib(after.broker.rssBytes) },
      targets: {
        cpuCores: 1,
        peakRssMiB: 1536,
        underOneCore: simCores < 1,
        under1_5GiB: peakRss < 1.5 * 2 ** 30,
      },
      ...(cpuProfDir ? { cpuProfile: cpuProfDir } : {}),
    });
  } finally {
    for (const child of children.reverse()) await stop(child);
    await dir.remove();
  }
}

if (process.argv[2] === '--simulate') await simulate(JSON.parse(process.argv[3]!) as SimulatorOptions);
else await main();
