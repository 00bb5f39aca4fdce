/**
 * The quick start as a user meets it: `sensorpipe start` (what `npm start` runs) as a child process in an
 * empty data folder, every port 0. Within 15 s the API lists the demo fleet online and the store holds
 * more readings by the second; the printed mosquitto_pub line, run as printed (the real Debian
 * mosquitto_pub, and `npx sensorpipe sign` for the payload), shows up on /live; Ctrl-C (SIGINT) ends it
 * with exit code 0 within 5 s, losing nothing it showed; started again on the same folder, the earlier
 * readings are still there. Then the same with InfluxDB (a real influxd) as the store. And what a user
 * meets when a default port is taken, and the --help of every command the README shows.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, runCli, START_ON_FREE_PORTS } from '../../harness/cli.ts';
import { influxQuery, startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { LiveTestClient } from '../../harness/pipeline.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const DEMO_DEVICES = 25;
/** A demo device with no fault injected (cli/start.ts gives sim-0003, -0007, -0011, -0015, -0019 faults). */
const WATCHED = 'sim-0001';

interface Endpoints {
  dashboard: string;
  mqtt: string;
  mqttWs: string;
  brokerMetrics: string;
  ingestMetrics: string;
  store: string;
}

interface RunningProduct {
  child: ChildProcess;
  startedAt: number;
  /** From the JSON log line "sensorpipe is running". */
  endpoints: Endpoints;
  /** What it printed for people (stdout). */
  printed: string;
  /** HTTP base of the display, e.g. http://127.0.0.1:41234 */
  base: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
  /** The JSON log lines so far (stderr). */
  logLines(): string[];
}

const children = new Set<ChildProcess>();

/** Runs `sensorpipe start` on `dataDir` with every port 0, and waits for it to say it is running. */
async function startProduct(dataDir: string, env: Record<string, string> = {}): Promise<RunningProduct> {
  const startedAt = Date.now();
  const child = spawn(process.execPath, [CLI_PATH, 'start'], {
    cwd: REPO,
    env: {
      ...process.env,
      SENSORPIPE_DATA_DIR: dataDir,
      ...START_ON_FREE_PORTS,
      SENSORPIPE_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const output = () => `--- stdout\n${stdout}\n--- stderr (last 4000 chars)\n${stderr.slice(-4000)}`;

  let endpoints: Endpoints | undefined;
  let exitedEarly = false;
  void exited.then(() => (exitedEarly = true));
  await waitFor(
    () => {
      if (exitedEarly) throw new Error(`sensorpipe start exited before it was running\n${output()}`);
      for (const line of stderr.split('\n')) {
        if (!line.includes('"sensorpipe is running"')) continue;
        endpoints = (JSON.parse(line) as { endpoints: Endpoints }).endpoints;
      }
      return endpoints !== undefined && stdout.includes('Ctrl-C stops everything');
    },
    'sensorpipe start to print its endpoints',
    15_000,
  );
  const logLines = () => stderr.split('\n').filter((line) => line.startsWith('{'));
  return { child, startedAt, endpoints: endpoints!, printed: stdout, base: endpoints!.dashboard.replace(/\/$/, ''), exited, output, logLines };
}

/** SIGINT, as Ctrl-C sends it; resolves with the exit code and how long the exit took. */
async function interrupt(product: RunningProduct): Promise<{ code: number | null; ms: number }> {
  const sent = Date.now();
  product.child.kill('SIGINT');
  const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 8_000).unref());
  const result = await Promise.race([product.exited, timeout]);
  if (result === 'timeout') throw new Error(`no exit within 8 s of SIGINT\n${product.output()}`);
  return { code: result.code, ms: Date.now() - sent };
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

interface DevicesBody {
  total: number;
  online: number;
  devices: { id: string; state: 'online' | 'offline' }[];
}

interface HistoryBody {
  series: { metric: string; points: { ts: number; value: number }[] }[];
  truncated: boolean;
}

/** Raw stored readings of a device in [from, to): one entry per (metric, ts), sorted. */
async function storedReadings(base: string, device: string, from: number, to: number): Promise<string[]> {
  const body = await getJson<HistoryBody>(`${base}/api/devices/${device}/readings?from=${from}&to=${to}&mode=raw&maxPoints=10000`);
  expect(body.truncated).toBe(false);
  return body.series.flatMap((s) => s.points.map((p) => `${s.metric}@${p.ts}=${p.value}`)).sort();
}

/** Readings in the store, over every demo device: one per (device, ts). */
async function storedCount(base: string, from: number): Promise<number> {
  const ids = Array.from({ length: DEMO_DEVICES }, (_, i) => `sim-${String(i).padStart(4, '0')}`);
  const counts = await Promise.all(
    ids.map(async (id) => {
      const body = await getJson<HistoryBody>(`${base}/api/devices/${id}/readings?from=${from}&to=now&mode=raw&maxPoints=10000`);
      return new Set(body.series.flatMap((s) => s.points.map((p) => p.ts))).size;
    }),
  );
  return counts.reduce((a, b) => a + b, 0);
}

/** The copy-paste line `sensorpipe start` printed, run by a shell as a user would paste it. */
async function runPrintedMosquittoPub(product: RunningProduct, dataDir: string): Promise<{ command: string; code: number | null; output: string }> {
  const match = /^ {2}(mosquitto_pub .*\\\n.*)$/m.exec(product.printed);
  if (match === null) throw new Error(`no mosquitto_pub line printed\n${product.output()}`);
  const command = match[1]!;
  // In the repository, as the README says (npx finds the sensorpipe command there); SENSORPIPE_DATA_DIR
  // as in the terminal that started sensorpipe, so `sign` keeps its seq counter in the same folder.
  const shell = spawn('bash', ['-c', command], { cwd: REPO, env: { ...process.env, SENSORPIPE_DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  shell.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  shell.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => shell.once('exit', resolve));
  return { command, code, output };
}

function liveUrl(product: RunningProduct): string {
  return `${product.base.replace(/^http/, 'ws')}/live`;
}

/**
 * The whole must-show, on one store. `env` picks the store; `checkStore` looks in it directly (the
 * embedded one is behind the process's file lock, so only the API can see it).
 */
async function quickStartScenario(env: Record<string, string>, checkStore?: (myReadingTs: number) => Promise<void>): Promise<void> {
  const dir: TempDir = await tempDir('sensorpipe-start-');
  const dataDir = `${dir.path}/data`;
  try {
    // ---- first run ----------------------------------------------------------------------------------
    const first = await startProduct(dataDir, env);
    expect(first.printed).toContain(`dashboard    ${first.endpoints.dashboard}`);
    const deadline = first.startedAt + 15_000;
    const within15s = () => Math.max(1, deadline - Date.now());

    let devices: DevicesBody | undefined;
    await waitFor(
      async () => {
        devices = await getJson<DevicesBody>(`${first.base}/api/devices`);
        return devices.online === DEMO_DEVICES;
      },
      `${DEMO_DEVICES} demo devices online (last seen: ${devices?.online ?? 0})`,
      within15s(),
      200,
    );
    expect(devices!.total).toBe(DEMO_DEVICES + 1);
    expect(devices!.devices.map((d) => d.id)).toContain('my-device');
    expect(devices!.devices.filter((d) => d.id.startsWith('sim-') && d.state === 'online')).toHaveLength(DEMO_DEVICES);

    const countAtStart = await storedCount(first.base, first.startedAt - 60_000);
    await waitFor(async () => (await storedCount(first.base, first.startedAt - 60_000)) > countAtStart, 'the store to hold more readings', within15s(), 250);
    expect(Date.now()).toBeLessThanOrEqual(deadline);

    // ---- a reading of the user's own, pushed with the printed line, appears live ----------------------
    const live = await LiveTestClient.connect(liveUrl(first));
    live.send({ type: 'subscribe', id: 'mine', devices: ['my-device', WATCHED] });
    await live.next((f) => f.type === 'subscribed' && f.id === 'mine');
    const pub = await runPrintedMosquittoPub(first, dataDir);
    expect(pub.code, `${pub.command}\n${pub.output}`).toBe(0);
    await waitFor(() => live.readings().some((r) => r.device === 'my-device' && r.metric === 'temperature' && r.value === 21.5), 'my-device on /live', 10_000);
    const mine = live.readings().find((r) => r.device === 'my-device')!;
    await waitFor(() => new Set(live.readings().filter((r) => r.device === WATCHED).map((r) => r.ts)).size >= 3, `three ${WATCHED} readings on /live`, 10_000);

    // ---- Ctrl-C ----------------------------------------------------------------------------------------
    // A range that ended a moment ago: its readings are all written (ingest writes within 100 ms), so it
    // must read back the same after the restart.
    const historyTo = Date.now() - 1_500;
    const before = await storedReadings(first.base, WATCHED, first.startedAt - 60_000, historyTo);
    expect(before.length).toBeGreaterThan(0);
    const stop = await interrupt(first);
    const shownLive = live.readings().filter((r) => r.device === WATCHED).map((r) => `${r.metric}@${r.ts}=${r.value}`);
    await live.close();
    expect(stop.code, first.output()).toBe(0);
    expect(stop.ms).toBeLessThan(5_000);
    // One process, several components: each log line names its component once (pino writes a binding
    // given twice twice, which JSON log tools read as either value or reject).
    const lines = first.logLines();
    expect(lines.filter((line) => (line.match(/"component":/g) ?? []).length > 1)).toEqual([]);
    const components = new Set(lines.map((line) => (JSON.parse(line) as { component?: string }).component));
    for (const component of ['start', 'broker', 'ingest']) expect(components.has(component), `a log line from ${component}`).toBe(true);

    // ---- started again on the same folder -------------------------------------------------------------
    const second = await startProduct(dataDir, env);
    try {
      expect(second.endpoints.store).toBe(first.endpoints.store);
      const again = await getJson<DevicesBody>(`${second.base}/api/devices`);
      expect(again.total).toBe(DEMO_DEVICES + 1); // the same fleet, not a second one
      // The earlier range reads back exactly as before the restart…
      expect(await storedReadings(second.base, WATCHED, first.startedAt - 60_000, historyTo)).toEqual(before);
      // …and every reading /live showed before Ctrl-C was stored: the shutdown lost nothing.
      const stored = new Set(await storedReadings(second.base, WATCHED, first.startedAt - 60_000, Date.now()));
      expect(shownLive.filter((r) => !stored.has(r))).toEqual([]);
      expect(await storedReadings(second.base, 'my-device', mine.ts, mine.ts + 1)).toEqual([`temperature@${mine.ts}=21.5`]);
      await checkStore?.(mine.ts);
    } finally {
      const stopAgain = await interrupt(second);
      expect(stopAgain.code, second.output()).toBe(0);
    }
  } finally {
    await dir.remove();
  }
}

afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
});

describe('sensorpipe start, as a child process', () => {
  it('on the embedded store: fleet online, readings growing, a mosquitto_pub reading live, Ctrl-C exits 0, data kept across a restart', async () => {
    await quickStartScenario({});
  }, 90_000);

  it.each([
    ['SENSORPIPE_MQTT_PORT', 'the first port it opens'],
    ['SENSORPIPE_HTTP_PORT', 'the last port it opens, after broker and ingest are up'],
  ])('a taken %s (%s): exits 1 at once with a message naming the variable', async (variable) => {
    const dir = await tempDir('sensorpipe-start-port-');
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const taken = (holder.address() as { port: number }).port;
    try {
      const started = Date.now();
      const child = spawn(process.execPath, [CLI_PATH, 'start'], {
        cwd: REPO,
        env: {
          ...process.env,
          SENSORPIPE_DATA_DIR: `${dir.path}/data`,
          ...START_ON_FREE_PORTS,
          SENSORPIPE_LOG_LEVEL: 'warn',
          [variable]: String(taken),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(child);
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      children.delete(child);
      expect(code, stderr).toBe(1);
      expect(Date.now() - started).toBeLessThan(10_000); // it ends by itself, half-started components and all
      expect(stderr).toContain(`sensorpipe: CONFIG_INVALID: port ${taken} on 127.0.0.1 (${variable} / --`);
      expect(stderr).toContain('is already in use');
      expect(stderr).not.toMatch(/^\s+at /m); // a message, not a stack trace
    } finally {
      holder.close();
      await dir.remove();
    }
  }, 30_000);

  it('every command the README shows answers --help', async () => {
    const commands = ['start', 'broker', 'ingest', 'display', 'alerts', 'sim', 'sign', 'devices', 'quarantine'];
    const results = await Promise.all(commands.map((command) => runCli([command, '--help'])));
    results.forEach((result, i) => {
      expect(result.code, `${commands[i]} --help: ${result.stderr}`).toBe(0);
      expect(result.stdout, commands[i]).toContain(`Usage: sensorpipe ${commands[i]}`);
    });
  }, 30_000);

  describe('with InfluxDB (SENSORPIPE_INFLUX_URL, a real influxd)', () => {
    let influx: InfluxServer;
    // A database of its own, so that a shared server given by INFLUX_URL starts empty for this test.
    const database = `start_test_${process.pid}_${Date.now()}`;
    beforeAll(async () => {
      influx = await startInfluxd();
    }, 30_000);
    afterAll(async () => {
      if (influx && !influx.managed) await influxQuery(influx.url, `DROP DATABASE "${database}"`).catch(() => {});
      await influx?.close();
    });

    it('the same, and the readings are in InfluxDB', async () => {
      await quickStartScenario({ SENSORPIPE_INFLUX_URL: influx.url, SENSORPIPE_INFLUX_DATABASE: database }, async (myTs) => {
        const answer = (await influxQuery(influx.url, `SELECT "temperature" FROM "readings" WHERE "device" = 'my-device'`, database)) as {
          results: { series?: { values: [number, number][] }[] }[];
        };
        expect(answer.results[0]?.series?.[0]?.values).toContainEqual([myTs, 21.5]);
      });
    }, 90_000);
  });
});
