/**
 * Live feed benchmark: devices → broker → ingest → display → 1,000 WebSocket viewers, each in its own
 * process (the viewers in one child process). Prints JSON for two phases of the same run:
 *   normal:    the viewers alone;
 *   withSlow:  the same, plus 10 deliberately slow viewers (whole fleet, socket read for 50 ms every 3 s);
 * each with deliveries/s, publish→viewer latency p50/p99 (from each reading's own timestamp, which is its
 * publish time) and the display's CPU; plus the change in p99 the slow viewers caused.
 *
 *   npx tsx bench/live.ts [--clients 1000] [--rate 5000] [--devices 500] [--per-client 5] [--seconds 20]
 *                         [--viewer-processes 2] [--tick 20ms]
 *
 * Each viewer subscribes to `--per-client` random devices (a device view), so 1,000 viewers at 5,000
 * readings/s get 1000 × 5000 × 5/500 = 50,000 readings/s between them. The store is a real influxd
 * (ingest and display are separate processes, and the embedded store is a single-process file).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { Registry, saveRegistry } from '../core/registry.ts';
import { topics } from '../core/topics.ts';
import { startInfluxd } from '../test/harness/influxd.ts';
import { provision, signedPayload } from '../test/harness/publisher.ts';
import { freePort } from '../test/harness/ports.ts';
import { tempDir } from '../test/harness/tmp.ts';
import { argValue, machine, printJson, processUsage, summarize } from './lib.ts';

const clientsCount = Number(argValue('clients', '1000'));
const rate = Number(argValue('rate', '5000'));
const deviceCount = Number(argValue('devices', '500'));
const perClient = Number(argValue('per-client', '5'));
const phaseSeconds = Number(argValue('seconds', '20'));
const viewerProcesses = Number(argValue('viewer-processes', '2'));
const tick = argValue('tick', '20ms');
const SLOW_CLIENTS = 10;
const WARMUP_SECONDS = 5;

// ---- child mode: the viewers ----------------------------------------------------------------------------------

interface PhaseSamples { latencies: number[]; readings: number }

/**
 * Viewers number `first` … `first + count - 1`; or, with `runsSlow`, only the slow viewers (in a
 * process of their own, so that their bursts of reading do not delay the normal viewers' event loop and
 * count as the server's latency).
 */
async function viewers(liveUrl: string, first: number, count: number, runsSlow: boolean): Promise<void> {
  const phases: Record<string, PhaseSamples> = { warmup: { latencies: [], readings: 0 }, normal: { latencies: [], readings: 0 }, withSlow: { latencies: [], readings: 0 } };
  let phase = phases.warmup!;
  const open = (frame: object) =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(liveUrl);
      ws.once('open', () => {
        ws.send(JSON.stringify(frame));
        resolve(ws);
      });
      ws.once('error', reject);
    });
  const sockets: WebSocket[] = [];
  for (let i = first; i < first + count; i++) {
    const devices = Array.from({ length: perClient }, (_, k) => `bench-${(i * 7 + k * 97) % deviceCount}`);
    const ws = await open({ type: 'subscribe', id: 'view', devices: [...new Set(devices)] });
    ws.on('message', (data) => {
      const now = Date.now();
      const frame = JSON.parse(String(data)) as { type: string; items?: [string, number, number, object][] };
      if (frame.type !== 'readings') return;
      for (const item of frame.items!) {
        phase.latencies.push(now - item[2]);
        phase.readings++;
      }
    });
    sockets.push(ws);
  }
  process.stdout.write('{"ready":true}\n');
  await new Promise((r) => setTimeout(r, WARMUP_SECONDS * 1000));
  phase = phases.normal!;
  process.stdout.write('{"phase":"normal"}\n');
  await new Promise((r) => setTimeout(r, phaseSeconds * 1000));
  // The slow viewers take the whole fleet and hardly read.
  const slow = await Promise.all(Array.from({ length: runsSlow ? SLOW_CLIENTS : 0 }, () => open({ type: 'subscribe', id: 'all', devices: '*' })));
  const socketOf = (ws: WebSocket) => (ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  for (const ws of slow) socketOf(ws).pause();
  const trickle = setInterval(() => {
    for (const ws of slow) {
      socketOf(ws).resume();
      setTimeout(() => socketOf(ws).pause(), 50);
    }
  }, 3000);
  phase = phases.withSlow!;
  process.stdout.write('{"phase":"withSlow"}\n');
  await new Promise((r) => setTimeout(r, phaseSeconds * 1000));
  clearInterval(trickle);
  const slowOpen = slow.filter((ws) => ws.readyState === WebSocket.OPEN).length;
  for (const ws of [...sockets, ...slow]) ws.terminate();
  // Exit only once the (large) line is written: stdout to a pipe is asynchronous, and exit would cut it.
  process.stdout.write(`${JSON.stringify({ result: { normal: phases.normal, withSlow: phases.withSlow }, slowStillOpen: slowOpen })}\n`, () => process.exit(0));
}

// ---- parent mode ----------------------------------------------------------------------------------------------

const root = new URL('..', import.meta.url).pathname;
function spawnNode(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
}

/** Resolves with each JSON line a child prints, to a listener. */
function jsonLines(child: ChildProcess, onLine: (line: Record<string, unknown>) => void): void {
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let newline: number;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line.startsWith('{')) onLine(JSON.parse(line) as Record<string, unknown>);
    }
  });
}

async function waitForHttp(url: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} never answered`);
}

async function main(): Promise<void> {
  const dir = await tempDir('sensorpipe-bench-live-');
  const influx = await startInfluxd();
  const children: ChildProcess[] = [];
  process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));
  const registry = new Registry();
  const devices = provision(registry, deviceCount, 'bench');
  const registryPath = join(dir.path, 'registry.json');
  await saveRegistry(registryPath, registry);
  const [mqttPort, ingestMetricsPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const secrets = { SENSORPIPE_INGEST_PASSWORD: 'bench-ingest', SENSORPIPE_DISPLAY_PASSWORD: 'bench-display' };
  const common = { SENSORPIPE_REGISTRY: registryPath, SENSORPIPE_DATA_DIR: dir.path, SENSORPIPE_LOG_LEVEL: 'warn', SENSORPIPE_INFLUX_URL: influx.url, SENSORPIPE_INFLUX_DATABASE: 'bench', ...secrets };
  const url = `mqtt://127.0.0.1:${mqttPort}`;
  const broker = spawnNode(['cli/bin.js', 'broker'], {
    ...common,
    SENSORPIPE_MQTT_HOST: '127.0.0.1',
    SENSORPIPE_MQTT_PORT: String(mqttPort),
    SENSORPIPE_MQTT_WS_PORT: '0',
    SENSORPIPE_BROKER_METRICS_PORT: '0',
    SENSORPIPE_DEVICE_PUBLISH_RATE: String(Math.ceil((rate / deviceCount) * 2)),
  });
  const ingest = spawnNode(['cli/bin.js', 'ingest'], { ...common, SENSORPIPE_MQTT_URL: url, SENSORPIPE_INGEST_METRICS_PORT: String(ingestMetricsPort) });
  await waitForHttp(`http://127.0.0.1:${ingestMetricsPort}/healthz`);
  const display = spawnNode(['cli/bin.js', 'display'], {
    ...common,
    SENSORPIPE_MQTT_URL: url,
    SENSORPIPE_HTTP_HOST: '127.0.0.1',
    SENSORPIPE_HTTP_PORT: String(httpPort),
    SENSORPIPE_LIVE_MAX_CLIENTS: String(clientsCount + SLOW_CLIENTS + 10),
    SENSORPIPE_LIVE_TICK: tick,
  });
  children.push(broker, ingest, display);
  const displayUrl = `http://127.0.0.1:${httpPort}`;
  await waitForHttp(`${displayUrl}/healthz`);

  const clients = await Promise.all(devices.map((d) => mqtt.connectAsync(url, { clientId: d.id, username: d.id, password: d.credentials.mqttPassword })));
  let sent = 0;
  const seq = new Array<number>(deviceCount).fill(0);
  const lastTs = new Array<number>(deviceCount).fill(0);
  const started = Date.now();
  const load = setInterval(() => {
    const now = Date.now();
    const due = Math.floor(((now - started) / 1000) * rate);
    while (sent < due) {
      const i = sent % deviceCount;
      const ts = Math.max(now, lastTs[i]! + 1);
      lastTs[i] = ts;
      const payload = signedPayload(devices[i]!, [{ seq: ++seq[i]!, ts, values: { temperature: 20 + (sent % 100) / 10, humidity: 40 } }]);
      clients[i]!.publish(topics.telemetry(devices[i]!.id), payload, { qos: 1 });
      sent++;
    }
  }, 5);

  const perProcess = Math.ceil(clientsCount / viewerProcesses);
  const liveUrl = `ws://127.0.0.1:${httpPort}/live`;
  const viewerChildren = [
    ...Array.from({ length: viewerProcesses }, (_, k) =>
      spawnNode(['--import', 'tsx', 'bench/live.ts', '--viewers', liveUrl, String(k * perProcess), String(Math.min(perProcess, clientsCount - k * perProcess)), 'false', ...process.argv.slice(2)], {}),
    ),
    spawnNode(['--import', 'tsx', 'bench/live.ts', '--viewers', liveUrl, '0', '0', 'true', ...process.argv.slice(2)], {}),
  ];
  children.push(...viewerChildren);
  const cpu: Record<string, { cores: number; rssMiB: number }> = {};
  let mark: { phase: string; at: number; cpuSeconds: number } | undefined;
  let lastMark: Promise<void> = Promise.resolve();
  const closeMark = async (at: number) => {
    if (mark === undefined) return;
    const usage = await processUsage(display.pid!);
    cpu[mark.phase] = { cores: Number(((usage.cpuSeconds - mark.cpuSeconds) / ((at - mark.at) / 1000)).toFixed(2)), rssMiB: Math.round(usage.rssBytes / 2 ** 20) };
  };
  // Phases are timed by the first viewer process; the others started at the same moment (give or take
  // their connect time), and every process reports its own samples.
  const outcomes = await Promise.all(viewerChildren.map((child, k) => new Promise<Record<string, unknown>>((resolve, reject) => {
    // A viewer process that dies (e.g. it could not connect) must end the bench, not leave it waiting.
    child.once('close', (code) => reject(new Error(`viewer process ${k} exited with ${code} before reporting`)));
    jsonLines(child, (line) => {
      void (async () => {
        if (k === 0 && typeof line.phase === 'string') {
          const at = Date.now();
          await closeMark(at);
          mark = { phase: line.phase, at, cpuSeconds: (await processUsage(display.pid!)).cpuSeconds };
        } else if (line.result !== undefined) {
          if (k === 0) lastMark = closeMark(Date.now());
          resolve(line);
        }
      })();
    });
  })));
  await lastMark;
  const merged = (phase: 'normal' | 'withSlow') => {
    const samples = outcomes.map((o) => (o.result as Record<string, PhaseSamples>)[phase]!);
    const readings = samples.reduce((n, p) => n + p.readings, 0);
    return { deliveriesPerSecond: Math.round(readings / phaseSeconds), latencyMs: summarize(samples.flatMap((p) => p.latencies)) };
  };
  const outcome = { result: { normal: merged('normal'), withSlow: merged('withSlow') }, slowStillOpen: outcomes.at(-1)!.slowStillOpen };
  clearInterval(load);
  const metrics = await (await fetch(`${displayUrl}/metrics`)).text();
  const counter = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
  await Promise.all(clients.map((c) => c.endAsync(true)));
  for (const child of [display, ingest, broker]) child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1500));
  await influx.close();
  await dir.remove();

  const result = outcome.result;
  const p99 = (phase: 'normal' | 'withSlow') => result[phase].latencyMs.p99 ?? Number.NaN;
  const p99Change = (p99('withSlow') - p99('normal')) / p99('normal');
  printJson({
    bench: 'live',
    machine: machine(),
    viewers: clientsCount,
    viewerProcesses,
    tick,
    devicesPerViewer: perClient,
    offeredReadingsPerSecond: rate,
    devices: deviceCount,
    phaseSeconds,
    normal: { ...result.normal, displayCpu: cpu.normal },
    withSlow: { ...result.withSlow, slowViewers: SLOW_CLIENTS, slowStillOpen: outcome.slowStillOpen, displayCpu: cpu.withSlow },
    p99ChangeWithSlow: Number(p99Change.toFixed(3)),
    display: {
      conflatedReadings: counter('sensorpipe_display_live_readings_conflated_total'),
      disconnects: metrics.split('\n').filter((l) => l.startsWith('sensorpipe_display_live_disconnects_total')),
    },
    targets: { p99Ms: 100, p99ChangeWithSlowBelow: 0.1 },
    met: { p99: p99('normal') <= 100 && p99('withSlow') <= 100, slowImpact: p99Change < 0.1 },
  });
  process.exit(0);
}

const viewersIndex = process.argv.indexOf('--viewers');
if (viewersIndex >= 0) {
  const [url, first, count, runsSlow] = process.argv.slice(viewersIndex + 1, viewersIndex + 5) as [string, string, string, string];
  await viewers(url, Number(first), Number(count), runsSlow === 'true');
}
else await main();
