/**
 * Live feed benchmark: devices → broker → ingest → display → 1,000 WebSocket viewers, each stage in its
 * own process (the viewers in child processes). After a 5 s warm-up, one run has three phases:
 *   normal:       the viewers alone (`--seconds`);
 *   withSlow:     the same plus 10 deliberately slow viewers of the whole fleet (`--slow-seconds`). The
 *                 display conflates a slow viewer and then drops it; a dropped slow viewer comes back at
 *                 once (a browser on a bad link reconnects), so there are 10 slow viewers at the display
 *                 for the whole phase (`withSlow.slowViewersAtDisplay`: their fewest and mean count);
 *   normalAfter:  the viewers alone again (`--seconds`).
 * It prints JSON with deliveries/s, publish→viewer latency p50/p99 (from each reading's own timestamp,
 * which is its publish time) and every process's CPU, RSS and GC pauses per phase, and the change in
 * p99 the slow viewers caused against both phases without them (`p99ChangeWithSlow`), judged against the
 * run's own noise: the change between the two phases without slow viewers (`p99ChangeAfterVsBefore`).
 * The target is met when the change is under 10 %, or, where the noise floor is larger than 10 %, no
 * larger than the noise floor (a smaller effect cannot be told from noise on this machine then);
 * `met.slowImpactThreshold` says which threshold applied. Over a 25 % noise floor it is not judged
 * (`met.slowImpact: null`): give the bench a quieter machine.
 *
 *   npx tsx bench/live.ts [--clients 1000] [--rate 5000] [--devices 500] [--per-client 5] [--seconds 30]
 *                         [--slow-seconds 40] [--viewer-processes 2] [--tick 20ms] [--profile-dir DIR]
 *                         [--product-root DIR]   (the broker, ingest and display of another checkout: bench/ab.ts)
 *
 * `--profile-dir` writes a CPU profile of the broker, ingest and display into DIR (open it in Chrome's
 * DevTools); the JSON always has each process's CPU, RSS and garbage-collection pauses per phase.
 *
 * Each viewer subscribes to `--per-client` random devices (a device view), so 1,000 viewers at 5,000
 * readings/s get 1000 × 5000 × 5/500 = 50,000 readings/s between them. The store is a real influxd
 * (ingest and display are separate processes, and the embedded store is a single-process file).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { Registry, saveRegistry } from '../core/registry.ts';
import { topics } from '../core/topics.ts';
import { startInfluxd } from '../harness/influxd.ts';
import { provision, signedPayload } from '../harness/publisher.ts';
import { freePort } from '../harness/ports.ts';
import { tempDir } from '../harness/tmp.ts';
import { argValue, machine, printJson, processUsage } from './lib.ts';

const clientsCount = Number(argValue('clients', '1000'));
const rate = Number(argValue('rate', '5000'));
const deviceCount = Number(argValue('devices', '500'));
const perClient = Number(argValue('per-client', '5'));
const phaseSeconds = Number(argValue('seconds', '30'));
const slowSeconds = Number(argValue('slow-seconds', '40'));
const viewerProcesses = Number(argValue('viewer-processes', '2'));
const tick = argValue('tick', '20ms');
const profileDir = argValue('profile-dir', '');
const productCli = join(argValue('product-root', new URL('..', import.meta.url).pathname), 'cli', 'bin.js');
const SLOW_CLIENTS = 10;
const WARMUP_SECONDS = 5;

// ---- child mode: the viewers ----------------------------------------------------------------------------------

/**
 * Latencies of one phase as histograms of whole milliseconds, one per second of the phase: 50,000
 * samples a second would make an array of a million numbers per phase, and its growth and GC would add
 * to the very latency measured.
 */
type Histogram = Record<number, number>;
interface PhaseSamples { seconds: Histogram[]; readings: number }
const emptySamples = (): PhaseSamples => ({ seconds: [], readings: 0 });

/** p50/p99/max of histograms merged. */
function latencySummary(histograms: Histogram[]): { count: number; p50: number | null; p99: number | null; max: number | null } {
  const merged = new Map<number, number>();
  for (const histogram of histograms) for (const [ms, n] of Object.entries(histogram)) merged.set(Number(ms), (merged.get(Number(ms)) ?? 0) + n);
  const bins = [...merged].sort((a, b) => a[0] - b[0]);
  const count = bins.reduce((total, [, n]) => total + n, 0);
  const at = (p: number): number | null => {
    let seen = 0;
    for (const [ms, n] of bins) if ((seen += n) >= Math.ceil((p / 100) * count)) return ms;
    return null;
  };
  return { count, p50: at(50), p99: at(99), max: bins.at(-1)?.[0] ?? null };
}

/** The phases, in order, as the first viewer process announces them. */
const PHASES = ['warmup', 'normal', 'withSlow', 'normalAfter'] as const;
type Phase = (typeof PHASES)[number];

/**
 * Viewers number `first` … `first + count - 1`; or, with `runsSlow`, only the slow viewers (in a
 * process of their own, so that their bursts of reading do not delay the normal viewers' event loop and
 * count as the server's latency).
 */
async function viewers(liveUrl: string, first: number, count: number, runsSlow: boolean): Promise<void> {
  const phases = Object.fromEntries(PHASES.map((name) => [name, emptySamples()])) as Record<Phase, PhaseSamples>;
  let phase = phases.warmup;
  let phaseStarted = Date.now();
  const enter = (name: Phase) => {
    phase = phases[name];
    phaseStarted = Date.now();
    process.stdout.write(`${JSON.stringify({ phase: name })}\n`);
  };
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
  // Normal viewers the server closed (they should never be: a finding if they are).
  let normalClosedByServer = 0;
  let ending = false;
  for (let i = first; i < first + count; i++) {
    const devices = Array.from({ length: perClient }, (_, k) => `bench-${(i * 7 + k * 97) % deviceCount}`);
    const ws = await open({ type: 'subscribe', id: 'view', devices: [...new Set(devices)] });
    ws.on('message', (data) => {
      const now = Date.now();
      const frame = JSON.parse(String(data)) as { type: string; items?: [string, number, number, object][] };
      if (frame.type !== 'readings') return;
      const histogram = (phase.seconds[Math.floor((now - phaseStarted) / 1000)] ??= {});
      for (const item of frame.items!) {
        const ms = now - item[2];
        histogram[ms] = (histogram[ms] ?? 0) + 1;
      }
      phase.readings += frame.items!.length;
    });
    ws.on('close', () => {
      if (!ending) normalClosedByServer++;
    });
    sockets.push(ws);
  }
  const sleep = (seconds: number) => new Promise((r) => setTimeout(r, seconds * 1000));
  await sleep(WARMUP_SECONDS);
  enter('normal');
  await sleep(phaseSeconds);
  // The slow viewers take the whole fleet, some 300 KB/s each, and read one socket chunk (at most
  // 64 KiB) a second. Once the kernel's buffers are full (about 15 s), their unsent bytes grow past the
  // display's slow mark: it conflates them, and drops them when their pongs or their reading stay behind.
  // A dropped one cannot tell for a long time (the server's FIN waits behind megabytes it reads at 64 KiB
  // a second), so the display's own count of the clients it dropped says when to open a replacement.
  const slowWatch = runsSlow ? await keepSlowViewers(liveUrl, open) : undefined;
  enter('withSlow');
  await sleep(slowSeconds);
  const slowReport = slowWatch?.stop();
  enter('normalAfter');
  await sleep(phaseSeconds);
  ending = true;
  for (const ws of sockets) ws.terminate();
  if (slowReport !== undefined) process.stdout.write(`${JSON.stringify({ slow: slowReport })}\n`);
  else process.stdout.write(`${JSON.stringify({ normalClosedByServer })}\n`);
  process.stdout.write(`${JSON.stringify({ result: phases })}\n`);
  // Stay until the parent has sampled every process's CPU for the last phase; it ends us then.
  setInterval(() => undefined, 60_000);
}

interface SlowReport {
  /** Slow viewers opened in the phase, the first ten included. */
  opened: number;
  /** Replacements that could not be opened (refused or failed), retried a second later. */
  openFailures: number;
  /** Slow viewers at the display, sampled each second once the dropped ones were replaced: the fewest and the mean. */
  atDisplayMin: number;
  atDisplayMean: number;
  /** Seconds into the phase of the first drop (conflation and drops, as the display counted them). */
  firstDropAfterSeconds: number | null;
  drops: number;
}

/** Sum of the display's server-side disconnects (every reason). */
async function displayDrops(metricsUrl: string): Promise<number | undefined> {
  try {
    const text = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(2000) })).text();
    let drops = 0;
    for (const match of text.matchAll(/^sensorpipe_display_live_disconnects_total(?:\{[^}]*\})? (\d+)/gm)) drops += Number(match[1]);
    return drops;
  } catch {
    return undefined;
  }
}

/**
 * Keeps SLOW_CLIENTS slow viewers at the display until `stop`: each second, as many new ones are opened
 * as the display has dropped (its disconnect counter; during this phase only slow viewers are dropped —
 * the normal viewers report any close they did not ask for).
 */
async function keepSlowViewers(liveUrl: string, open: (frame: object) => Promise<WebSocket>): Promise<{ stop(): SlowReport }> {
  const metricsUrl = liveUrl.replace(/^ws/, 'http').replace(/\/live$/, '/metrics');
  const socketOf = (ws: WebSocket) => (ws as unknown as { _socket: { pause(): void; resume(): void; on(e: 'data', f: () => void): void } })._socket;
  const slow: WebSocket[] = [];
  const started = Date.now();
  const dropsAtStart = (await displayDrops(metricsUrl)) ?? 0;
  let drops = 0;
  let openFailures = 0;
  let firstDropAfterSeconds: number | null = null;
  const atDisplay: number[] = [];
  let stopped = false;
  const openOne = async (): Promise<void> => {
    try {
      const ws = await open({ type: 'subscribe', id: 'all', devices: '*' });
      ws.on('error', () => {}); // a dropped slow viewer may see a reset
      if (stopped) {
        ws.terminate();
        return;
      }
      // Registered after ws's own listener, so the chunk is handled and then the socket stops again.
      socketOf(ws).on('data', () => socketOf(ws).pause());
      socketOf(ws).pause();
      slow.push(ws);
    } catch {
      openFailures++;
    }
  };
  await Promise.all(Array.from({ length: SLOW_CLIENTS }, openOne));
  let busy = false;
  const everySecond = setInterval(() => {
    for (const ws of slow) socketOf(ws).resume();
    if (busy) return;
    busy = true;
    void (async () => {
      const total = await displayDrops(metricsUrl);
      if (total !== undefined && !stopped) {
        drops = total - dropsAtStart;
        if (drops > 0) firstDropAfterSeconds ??= Math.round((Date.now() - started) / 1000);
        const missing = SLOW_CLIENTS - (slow.length - drops);
        if (missing > 0) await Promise.all(Array.from({ length: missing }, openOne));
        // After the replacements: a dropped slow viewer is back within the second.
        atDisplay.push(slow.length - drops);
      }
    })().finally(() => (busy = false));
  }, 1000);
  return {
    stop() {
      stopped = true;
      clearInterval(everySecond);
      for (const ws of slow) ws.terminate();
      return {
        opened: slow.length,
        openFailures,
        atDisplayMin: atDisplay.length > 0 ? Math.min(...atDisplay) : 0,
        atDisplayMean: atDisplay.length > 0 ? Math.round((atDisplay.reduce((a, b) => a + b, 0) / atDisplay.length) * 10) / 10 : 0,
        firstDropAfterSeconds,
        drops,
      };
    },
  };
}

// ---- parent mode ----------------------------------------------------------------------------------------------

const root = new URL('..', import.meta.url).pathname;
/** A node child named `name`, whose garbage-collection pauses bench/gc-observer.js counts into `gcDir`. */
function spawnNode(gcDir: string, name: string, args: string[], env: Record<string, string>): ChildProcess {
  const gcEnv = { SENSORPIPE_BENCH_GC_FILE: join(gcDir, `${name}.json`) };
  return spawn(process.execPath, ['--import', './bench/gc-observer.js', ...args], { cwd: root, env: { ...process.env, ...gcEnv, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
}

interface GcTotals { [kind: string]: { pauses: number; ms: number; byLengthMs: number[] } }

/** The last totals read per process: a file caught half-written (or not written yet) gives those again. */
const lastGc = new Map<string, GcTotals>();

async function readGc(gcDir: string, name: string): Promise<GcTotals> {
  try {
    const totals = JSON.parse(await readFile(join(gcDir, `${name}.json`), 'utf8')) as GcTotals;
    lastGc.set(name, totals);
    return totals;
  } catch {
    return lastGc.get(name) ?? {};
  }
}

/** The last usage read per process: a process that has just exited gives its last reading again. */
const lastUsage = new Map<number, { cpuSeconds: number; rssBytes: number }>();

async function usageOf(pid: number): Promise<{ cpuSeconds: number; rssBytes: number }> {
  try {
    const usage = await processUsage(pid);
    lastUsage.set(pid, usage);
    return usage;
  } catch {
    return lastUsage.get(pid) ?? { cpuSeconds: 0, rssBytes: 0 };
  }
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
      if (!line.startsWith('{')) continue;
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue; // a child's stray output, not one of our lines
      }
      onLine(parsed);
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
  process.on('exit', () => {
    children.forEach((c) => c.kill('SIGKILL'));
    // A run that fails midway must not leave its influxd behind either.
    try {
      if (influx.pid !== undefined) process.kill(influx.pid, 'SIGKILL');
    } catch {
      // It had already exited.
    }
  });
  const registry = new Registry();
  const devices = provision(registry, deviceCount, 'bench');
  const registryPath = join(dir.path, 'registry.json');
  await saveRegistry(registryPath, registry);
  const [mqttPort, ingestMetricsPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const secrets = { SENSORPIPE_INGEST_PASSWORD: 'bench-ingest', SENSORPIPE_DISPLAY_PASSWORD: 'bench-display' };
  const common = { SENSORPIPE_REGISTRY: registryPath, SENSORPIPE_DATA_DIR: dir.path, SENSORPIPE_LOG_LEVEL: 'warn', SENSORPIPE_INFLUX_URL: influx.url, SENSORPIPE_INFLUX_DATABASE: 'bench', ...secrets };
  const url = `mqtt://127.0.0.1:${mqttPort}`;
  const profile = profileDir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  const broker = spawnNode(dir.path, 'broker', [...profile, productCli, 'broker'], {
    ...common,
    SENSORPIPE_MQTT_HOST: '127.0.0.1',
    SENSORPIPE_MQTT_PORT: String(mqttPort),
    SENSORPIPE_MQTT_WS_PORT: '0',
    SENSORPIPE_BROKER_METRICS_PORT: '0',
    SENSORPIPE_DEVICE_PUBLISH_RATE: String(Math.ceil((rate / deviceCount) * 2)),
  });
  const ingest = spawnNode(dir.path, 'ingest', [...profile, productCli, 'ingest'], { ...common, SENSORPIPE_MQTT_URL: url, SENSORPIPE_INGEST_METRICS_PORT: String(ingestMetricsPort) });
  await waitForHttp(`http://127.0.0.1:${ingestMetricsPort}/healthz`);
  const display = spawnNode(dir.path, 'display', [...profile, productCli, 'display'], {
    ...common,
    SENSORPIPE_MQTT_URL: url,
    SENSORPIPE_HTTP_HOST: '127.0.0.1',
    SENSORPIPE_HTTP_PORT: String(httpPort),
    SENSORPIPE_LIVE_MAX_CLIENTS: String(clientsCount + SLOW_CLIENTS + 10),
    // Every viewer comes from 127.0.0.1: the per-address caps must let the whole bench in.
    SENSORPIPE_LIVE_MAX_CLIENTS_PER_ADDRESS: String(clientsCount + SLOW_CLIENTS + 10),
    SENSORPIPE_HTTP_MAX_CONNECTIONS_PER_ADDRESS: String(clientsCount + SLOW_CLIENTS + 50),
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
      spawnNode(dir.path, `viewers-${k}`, ['--import', 'tsx', 'bench/live.ts', '--viewers', liveUrl, String(k * perProcess), String(Math.min(perProcess, clientsCount - k * perProcess)), 'false', ...process.argv.slice(2)], {}),
    ),
    spawnNode(dir.path, 'slowViewers', ['--import', 'tsx', 'bench/live.ts', '--viewers', liveUrl, '0', '0', 'true', ...process.argv.slice(2)], {}),
  ];
  children.push(...viewerChildren);
  // When the display began to conflate the slow viewers and to disconnect them, from its own counters.
  const slowSeen: { conflatingAfterSeconds?: number; firstDisconnectAfterSeconds?: number } = {};
  const watchSlow = setInterval(() => {
    if (mark?.phase !== 'withSlow') return;
    const after = Math.round((Date.now() - mark.at) / 1000);
    void fetch(`${displayUrl}/metrics`).then((r) => r.text()).then((text) => {
      if (/^sensorpipe_display_live_readings_conflated_total [1-9]/m.test(text)) slowSeen.conflatingAfterSeconds ??= after;
      if (/^sensorpipe_display_live_disconnects_total\{reason="(slow|heartbeat)"\} [1-9]/m.test(text)) slowSeen.firstDisconnectAfterSeconds ??= after;
    }, () => undefined);
  }, 1000);
  // Where the machine's time goes, per phase: CPU cores and RSS of every process in the run (the load
  // generator is this process: it signs and publishes every reading).
  const processGroups: Record<string, { pids: number[]; gcNames: string[] }> = {
    display: { pids: [display.pid!], gcNames: ['display'] },
    broker: { pids: [broker.pid!], gcNames: ['broker'] },
    ingest: { pids: [ingest.pid!], gcNames: ['ingest'] },
    influxd: { pids: influx.pid === undefined ? [] : [influx.pid], gcNames: [] },
    viewers: { pids: viewerChildren.slice(0, -1).map((c) => c.pid!), gcNames: viewerChildren.slice(0, -1).map((_, k) => `viewers-${k}`) },
    slowViewers: { pids: [viewerChildren.at(-1)!.pid!], gcNames: ['slowViewers'] },
    loadGenerator: { pids: [process.pid], gcNames: [] },
  };
  const sampleProcesses = async () =>
    Object.fromEntries(await Promise.all(Object.entries(processGroups).map(async ([name, group]) => {
      const usages = await Promise.all(group.pids.map((pid) => usageOf(pid)));
      const gcs = await Promise.all(group.gcNames.map((gcName) => readGc(dir.path, gcName)));
      const gc = { ms: 0, pausesOver25ms: 0 };
      for (const totals of gcs) {
        for (const kind of Object.values(totals)) {
          gc.ms += kind.ms;
          // Buckets (gc-observer.js): ≤ 5, ≤ 10, ≤ 25, ≤ 50 ms and longer; the last two are over 25 ms.
          gc.pausesOver25ms += kind.byLengthMs.slice(3).reduce((a, b) => a + b, 0);
        }
      }
      return [name, { cpuSeconds: usages.reduce((t, u) => t + u.cpuSeconds, 0), rssBytes: usages.reduce((t, u) => t + u.rssBytes, 0), gc }] as const;
    })));
  type ProcessPhase = { cores: number; rssMiB: number; gcPausedShare: number; gcPausesOver25ms: number };
  const cpu: Partial<Record<Phase, Record<string, ProcessPhase>>> = {};
  let mark: { phase: Phase; at: number; usage: Awaited<ReturnType<typeof sampleProcesses>> } | undefined;
  let lastMark: Promise<void> = Promise.resolve();
  const closeMark = async (at: number) => {
    if (mark === undefined) return;
    const usage = await sampleProcesses();
    const seconds = (at - mark.at) / 1000;
    cpu[mark.phase] = Object.fromEntries(Object.entries(usage).map(([name, u]) => {
      const before = mark!.usage[name]!;
      return [name, {
        cores: Number(((u.cpuSeconds - before.cpuSeconds) / seconds).toFixed(2)),
        rssMiB: Math.round(u.rssBytes / 2 ** 20),
        gcPausedShare: Number(((u.gc.ms - before.gc.ms) / 1000 / seconds).toFixed(3)),
        gcPausesOver25ms: u.gc.pausesOver25ms - before.gc.pausesOver25ms,
      }];
    }));
  };
  // Phases are timed by the first viewer process; the others started at the same moment (give or take
  // their connect time), and every process reports its own samples.
  let slowReport: SlowReport | undefined;
  let normalClosedByServer = 0;
  const outcomes = await Promise.all(viewerChildren.map((child, k) => new Promise<Record<string, unknown>>((resolve, reject) => {
    // A viewer process that dies (e.g. it could not connect) must end the bench, not leave it waiting.
    child.once('close', (code) => reject(new Error(`viewer process ${k} exited with ${code} before reporting`)));
    jsonLines(child, (line) => {
      (async () => {
        if (k === 0 && typeof line.phase === 'string') {
          // The last phase's end is marked when its result arrives.
          const at = Date.now();
          await closeMark(at);
          mark = { phase: line.phase as Phase, at, usage: await sampleProcesses() };
        } else if (line.slow !== undefined) {
          slowReport = line.slow as SlowReport;
        } else if (typeof line.normalClosedByServer === 'number') {
          normalClosedByServer += line.normalClosedByServer;
        } else if (line.result !== undefined) {
          if (k === 0) lastMark = closeMark(Date.now());
          resolve(line);
        }
      })().catch(reject);
    });
  })));
  await lastMark;
  clearInterval(watchSlow);
  for (const child of viewerChildren) child.kill('SIGTERM');
  const samplesOf = (name: Phase) => outcomes.map((o) => (o.result as Record<Phase, PhaseSamples>)[name]);
  const phase = (...names: Phase[]) => {
    const samples = names.flatMap(samplesOf);
    const seconds = names.reduce((total, name) => total + (name === 'withSlow' ? slowSeconds : phaseSeconds), 0);
    const readings = samples.reduce((n, p) => n + p.readings, 0);
    return { deliveriesPerSecond: Math.round(readings / seconds), latencyMs: latencySummary(samples.flatMap((p) => p.seconds.filter(Boolean))) };
  };
  /** p99 of each second of a phase, all viewer processes merged: shows when the tail happens. */
  const p99BySecond = (name: Phase) => {
    const samples = samplesOf(name);
    const length = Math.max(...samples.map((p) => p.seconds.length));
    return Array.from({ length }, (_, second) => latencySummary(samples.map((p) => p.seconds[second] ?? {})).p99);
  };
  clearInterval(load);
  const metrics = await (await fetch(`${displayUrl}/metrics`)).text();
  const counter = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
  await Promise.all(clients.map((c) => c.endAsync(true)));
  for (const child of [display, ingest, broker]) child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1500));
  await influx.close();
  await dir.remove();

  // The baseline is both phases without slow viewers, before and after: drift over the run (influxd
  // compacting, caches warming) then weighs on both sides of the comparison alike.
  const withoutSlow = { ...phase('normal', 'normalAfter'), before: phase('normal'), after: phase('normalAfter') };
  const withSlow = phase('withSlow');
  const p99Change = ((withSlow.latencyMs.p99 ?? NaN) - (withoutSlow.latencyMs.p99 ?? NaN)) / (withoutSlow.latencyMs.p99 ?? NaN);
  // The noise floor: the same comparison between the two phases without slow viewers.
  const noiseFloor = (withoutSlow.after.latencyMs.p99! - withoutSlow.before.latencyMs.p99!) / withoutSlow.before.latencyMs.p99!;
  const slowImpactThreshold = Math.max(0.1, Math.abs(noiseFloor));
  // Above a 25 % noise floor a 10 % effect cannot be told from the machine's own wander: not judged (null).
  const judgeable = slowImpactThreshold <= 0.25;
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
    slowPhaseSeconds: slowSeconds,
    normal: withoutSlow,
    withSlow: { ...withSlow, slowViewers: SLOW_CLIENTS, ...slowSeen, slowViewersAtDisplay: slowReport ?? null },
    normalViewersClosedByServer: normalClosedByServer,
    processesPerPhase: cpu,
    p99BySecond: { normal: p99BySecond('normal'), withSlow: p99BySecond('withSlow'), normalAfter: p99BySecond('normalAfter') },
    p99ChangeWithSlow: Number(p99Change.toFixed(3)),
    // The same comparison between the two phases without slow viewers: the noise floor of the one above.
    p99ChangeAfterVsBefore: Number(noiseFloor.toFixed(3)),
    display: {
      conflatedReadings: counter('sensorpipe_display_live_readings_conflated_total'),
      disconnects: metrics.split('\n').filter((l) => l.startsWith('sensorpipe_display_live_disconnects_total')),
    },
    targets: { p99Ms: 100, p99ChangeWithSlowBelow: 0.1, orWithinNoiseFloor: true },
    met: {
      p99: (withoutSlow.latencyMs.p99 ?? Infinity) <= 100 && (withSlow.latencyMs.p99 ?? Infinity) <= 100,
      slowImpact: judgeable ? p99Change < slowImpactThreshold && (slowReport?.atDisplayMin ?? 0) > 0 : null,
      slowImpactThreshold: Number(slowImpactThreshold.toFixed(3)),
    },
  });
  process.exit(0);
}

const viewersIndex = process.argv.indexOf('--viewers');
if (viewersIndex >= 0) {
  const [url, first, count, runsSlow] = process.argv.slice(viewersIndex + 1, viewersIndex + 5) as [string, string, string, string];
  await viewers(url, Number(first), Number(count), runsSlow === 'true');
}
else await main();
