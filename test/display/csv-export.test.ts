/**
 * History exports against a real pipeline (our broker, ingest, the embedded store) over real sockets:
 * - a raw CSV export holds every point of any range, streamed a page at a time: complete, in order,
 *   each point once across page boundaries (several metrics at one timestamp included);
 * - it reads the next page only once the last went out, stops reading when the client goes away, and
 *   holds no history slot between pages (a JSON request gets through while a download is stalled);
 * - a store failure mid-way ends the answer as incomplete, never as a short file that looks whole;
 * - an aggregated export says so, in its header and its file name;
 * - a raw JSON answer that was cut says so, and where to continue, and continuing gives the rest once.
 * Pages read are counted by the display's own store metrics (/metrics), not by timing.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SensorpipeError } from '../../core/errors.ts';
import { createLogger } from '../../core/logger.ts';
import { HistoryGate } from '../../display/history-gate.ts';
import { startDisplay, type RunningDisplay } from '../../display/index.ts';
import { createDisplayMetrics } from '../../display/metrics.ts';
import { displayConfig, startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { waitFor } from '../../harness/publisher.ts';
import type { StorePoint, TimeSeriesStore } from '../../store/index.ts';

let pipeline: TestPipeline;
/** One history slot for the whole display: a download that held one would lock everyone else out. */
let display: RunningDisplay;

const DAY = 86_400_000;
const T0 = Math.floor(Date.now() / 60_000) * 60_000 - 2 * 3_600_000;
const METRICS = ['humidity', 'pressure', 'temperature', 'voltage'];
/** dev-0: 15,000 times × 4 metrics at one timestamp each (every 100 ms), 100 lone points between, one far back. */
const EXPORTED: StorePoint[] = [];
for (let i = 0; i < 15_000; i++) for (const [k, metric] of METRICS.entries()) EXPORTED.push({ device: 'dev-0', metric, ts: T0 + i * 100, value: i + k / 8 });
for (let i = 0; i < 100; i++) EXPORTED.push({ device: 'dev-0', metric: 'pressure', ts: T0 + i * 100 + 50, value: -1 - i });
EXPORTED.push({ device: 'dev-0', metric: 'temperature', ts: T0 - 20 * DAY, value: 3.25 });
const EXPORT_FROM = T0 - 30 * DAY; // more than the 7 days a raw JSON query may span
const EXPORT_TO = T0 + 3_600_000;
/** dev-1: 400,000 points, about 20 MB of CSV: far more than the socket buffers take. */
const BIG_POINTS = 400_000;

async function writeAll(store: TimeSeriesStore, points: StorePoint[]): Promise<void> {
  for (let i = 0; i < points.length; i += 10_000) expect((await store.write(points.slice(i, i + 10_000))).refused).toEqual([]);
}

async function displayWith(env: Record<string, string>, store: TimeSeriesStore = pipeline.store): Promise<RunningDisplay> {
  const started = await startDisplay({ config: displayConfig(pipeline.broker, pipeline.dir.path, env), registryPath: pipeline.registryPath, store, logger: createLogger({ level: 'silent' }) });
  await started.feed.ready;
  return started;
}

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 3 });
  await writeAll(pipeline.store, EXPORTED);
  const big: StorePoint[] = [];
  for (let i = 0; i < BIG_POINTS / 4; i++) for (const metric of METRICS) big.push({ device: 'dev-1', metric, ts: T0 + i * 10, value: i });
  await writeAll(pipeline.store, big);
  display = await displayWith({ SENSORPIPE_HISTORY_MAX_CONCURRENT: '1' });
}, 120_000);
afterAll(async () => {
  await display?.close();
  await pipeline?.close();
});

/** Raw pages the display has read from its store so far. */
async function pagesRead(of: RunningDisplay = display): Promise<number> {
  const text = await (await fetch(`${of.url}/metrics`)).text();
  return Number(/^sensorpipe_store_operation_seconds_count\{operation="raw_page",adapter="embedded"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

const csvLine = (p: { ts: number; metric: string; value: number }): string => `${new Date(p.ts).toISOString()},${p.ts},${p.metric},${p.value}`;
const byTimeThenMetric = (a: StorePoint, b: StorePoint): number => a.ts - b.ts || (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0);

describe('raw CSV export', () => {
  it('holds every point of a range far longer than a page: in order, each once, metrics of one time split across pages', async () => {
    const before = await pagesRead();
    const response = await fetch(`${display.url}/api/devices/dev-0/readings?mode=raw&format=csv&from=${EXPORT_FROM}&to=${EXPORT_TO}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(response.headers.get('content-disposition')).toBe(`attachment; filename="dev-0-raw-${new Date(EXPORT_FROM).toISOString().replace(/[-:.]/g, '')}-${new Date(EXPORT_TO).toISOString().replace(/[-:.]/g, '')}.csv"`);
    const lines = (await response.text()).split('\n');
    expect(lines.pop()).toBe(''); // the file ends with its last row's newline
    expect(lines[0]).toBe('time,ts,metric,value');
    const expected = [...EXPORTED].sort(byTimeThenMetric).map(csvLine);
    expect(lines.length - 1).toBe(60_101);
    expect(lines.slice(1)).toEqual(expected);
    // 60,101 points at 5,000 a page: the export was read in pages, not as one answer.
    expect((await pagesRead()) - before).toBeGreaterThanOrEqual(13);
  });

  it('reads only what the client takes, stops when it goes away, and holds no history slot between pages', async () => {
    const before = await pagesRead();
    const socket = await openSocket(display.port);
    socket.pause(); // never reads: the server's writes stop once the socket buffers are full
    socket.write(`GET /api/devices/dev-1/readings?mode=raw&format=csv&from=${T0}&to=${T0 + DAY} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    // Reads go on until the buffers are full, then stop: the count holds still, far below the 80 pages.
    let stalledAt = -1;
    await waitFor(async () => {
      const now = await pagesRead();
      const still = now === stalledAt && now > before;
      stalledAt = now;
      return still;
    }, 'the export to stall on the unread socket', 20_000, 500);
    expect(stalledAt - before).toBeLessThan(40);
    // The only slot is free between pages: another viewer's request is answered, not refused as busy.
    const other = await fetch(`${display.url}/api/devices/dev-0/readings?mode=raw&from=${T0}&to=${T0 + 1000}`);
    expect(other.status).toBe(200);
    expect(((await other.json()) as { series: unknown[] }).series).toHaveLength(4);
    // The client goes away: no further page is read.
    socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await pagesRead()).toBe(stalledAt);
    expect(await metricValue(display, 'sensorpipe_display_history_loads')).toBe(0);
  }, 40_000);

  it('a store failure mid-export ends the answer as incomplete, never as a short file that looks whole', async () => {
    let pages = 0;
    const failing: TimeSeriesStore = {
      ...pipeline.store,
      kind: pipeline.store.kind,
      rawPage: async (query) => {
        if (++pages > 2) throw new SensorpipeError('STORE_UNAVAILABLE', 'embedded store: the disk went away');
        return pipeline.store.rawPage(query);
      },
      close: async () => {},
    };
    const broken = await displayWith({}, failing);
    try {
      const response = await fetch(`${broken.url}/api/devices/dev-0/readings?mode=raw&format=csv&from=${EXPORT_FROM}&to=${EXPORT_TO}`);
      expect(response.status).toBe(200);
      await expect(response.text()).rejects.toThrow();
      // A failure at the first page is still an error answer with its code.
      pages = 10;
      const refused = await fetch(`${broken.url}/api/devices/dev-0/readings?mode=raw&format=csv&from=${EXPORT_FROM}&to=${EXPORT_TO}`);
      expect(refused.status).toBe(503);
      expect(await refused.json()).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    } finally {
      await broken.close();
    }
  });

  it('answers HEAD with the headers alone, after reading one page', async () => {
    const before = await pagesRead();
    const response = await fetch(`${display.url}/api/devices/dev-1/readings?mode=raw&format=csv&from=${T0}&to=${T0 + DAY}`, { method: 'HEAD' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-disposition')).toMatch(/^attachment; filename="dev-1-raw-/);
    expect((await pagesRead()) - before).toBe(1);
  });

  it.each([
    ['a range longer than 20 years', `from=${T0 - 21 * 365 * DAY}&to=${T0}`, 'QUERY_RANGE_INVALID'],
    ['a bad metric name', 'metrics=Temp%20C', 'QUERY_INVALID'],
    ['a reversed range', `from=${T0}&to=${T0 - 1000}`, 'QUERY_RANGE_INVALID'],
  ])('refuses %s with 400 %s before anything is sent', async (_what, query, code) => {
    const response = await fetch(`${display.url}/api/devices/dev-0/readings?mode=raw&format=csv&${query}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ code });
  });
});

describe('aggregated CSV export', () => {
  it('names the function and the window in its header and its file name', async () => {
    const from = T0;
    const to = T0 + 1_500_000;
    const response = await fetch(`${display.url}/api/devices/dev-0/readings?metrics=temperature,humidity&format=csv&from=${from}&to=${to}&every=1m&fn=max`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-disposition')).toMatch(/^attachment; filename="dev-0-aggregated-max-1m-\d{8}T\d{9}Z-\d{8}T\d{9}Z\.csv"$/);
    const lines = (await response.text()).trim().split('\n');
    expect(lines[0]).toBe('time,ts,metric,max_1m,low_1m,high_1m');
    // 25 windows of 1 minute (600 readings each) per metric, by time then metric.
    expect(lines).toHaveLength(1 + 25 * 2);
    // The first window holds i = 0..599; temperature's values are i + 0.25.
    expect(lines[1]).toBe(`${new Date(T0).toISOString()},${T0},humidity,599,0,599`);
    expect(lines[2]).toBe(`${new Date(T0).toISOString()},${T0},temperature,599.25,0.25,599.25`);
    expect(lines[3]).toBe(`${new Date(T0 + 60_000).toISOString()},${T0 + 60_000},humidity,1199,600,1199`);
  });
});

describe('raw JSON answer', () => {
  it('says when it was cut and where to continue; continuing gives every point once', async () => {
    const seen = new Map<string, number[]>();
    let from = T0;
    let answers = 0;
    for (;;) {
      const response = await fetch(`${display.url}/api/devices/dev-0/readings?mode=raw&from=${from}&to=${EXPORT_TO}&maxPoints=4000`);
      const body = (await response.json()) as { truncated: boolean; nextFrom?: number; series: { metric: string; points: { ts: number }[] }[] };
      answers++;
      for (const series of body.series) {
        const times = seen.get(series.metric) ?? [];
        times.push(...series.points.map((p) => p.ts));
        seen.set(series.metric, times);
      }
      if (!body.truncated) {
        expect(body.nextFrom).toBeUndefined();
        break;
      }
      expect(body.nextFrom).toBeGreaterThan(from);
      from = body.nextFrom!;
    }
    expect(answers).toBeGreaterThanOrEqual(4); // 15,100 points of one metric, 4,000 an answer
    for (const metric of METRICS) {
      const expected = EXPORTED.filter((p) => p.metric === metric && p.ts >= T0).map((p) => p.ts).sort((a, b) => a - b);
      expect(seen.get(metric), metric).toEqual(expected);
    }
  });
});

describe('history gate, for loads in parts', () => {
  it('a patient part waits its turn past the wait limit, first come first served, outside the waiting bound', async () => {
    const gate = new HistoryGate({ maxConcurrent: 1, maxWaiting: 1, maxWaitMs: 100, metrics: createDisplayMetrics() });
    let release!: () => void;
    const holding = gate.run('http', () => new Promise<void>((resolve) => (release = resolve)));
    const order: string[] = [];
    const patient = gate.run('http', async () => order.push('page'), undefined, { patient: true });
    // The patient part does not fill the one waiting place: an ordinary load still queues behind it.
    const ordinary = gate.run('http', async () => order.push('json'));
    expect(gate.queued).toBe(2);
    // A third ordinary load finds the waiting place taken: refused at once.
    await expect(gate.run('http', async () => order.push('refused'))).rejects.toMatchObject({ code: 'SERVER_BUSY' });
    // Past the wait limit the ordinary one is refused; the patient one is still waiting.
    await expect(ordinary).rejects.toMatchObject({ code: 'SERVER_BUSY' });
    expect(gate.queued).toBe(1);
    release();
    await holding;
    await patient;
    expect(order).toEqual(['page']);
    expect(gate.active).toBe(0);
  });
});

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => resolve(socket));
    socket.once('error', reject);
  });
}

async function metricValue(of: RunningDisplay, name: string): Promise<number> {
  const text = await (await fetch(`${of.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
}
