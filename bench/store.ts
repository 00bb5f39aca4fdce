/**
 * Store benchmark: write throughput (batches of 5,000 points, one batch in flight, as ingest writes) and
 * the latency of a 24-hour, 1-second-resolution query downsampled to ≤ 1,000 points, per adapter, beside
 * two baselines on the same influxd: raw line protocol posted with fetch, and the `influx` library's
 * writePoints. A point is one value of one metric of one device at one time.
 *
 *   npx tsx bench/store.ts [--seconds 86400] [--runs 20] [--reps 3]
 *
 * Starts its own influxd (or uses INFLUX_URL) and an embedded store in a temporary folder. Two data
 * shapes: `reading4` (a reading carries 4 metrics, so 4 points share one line of line protocol — the
 * common case) and `reading1` (one metric per reading, 4 devices: one point per line, the worst case).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import influx from 'influx';
import { openEmbeddedStore } from '../store/embedded.ts';
import { openInfluxStore } from '../store/influx1.ts';
import type { StorePoint, TimeSeriesStore } from '../store/index.ts';
import { influxQuery, startInfluxd } from '../harness/influxd.ts';

const BATCH = 5000;
const T0 = Date.UTC(2026, 0, 5);
const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const SECONDS = arg('seconds', 86_400);
const RUNS = arg('runs', 20);
const REPS = arg('reps', 3);

type Shape = 'reading4' | 'reading1';

/** Batches of points, in time order, built before timing starts (building them is ingest's cost). */
function dataset(shape: Shape, prefix: string): StorePoint[][] {
  const points: StorePoint[] = [];
  const meta = { site: 'Hall 7', model: 'TH-1', profile: 'env' };
  for (let i = 0; i < SECONDS; i++) {
    const ts = T0 + i * 1000;
    for (let k = 0; k < 4; k++) {
      const value = Math.round(Math.sin(i / 600 + k) * 10_000) / 100 + k * 10;
      if (shape === 'reading4') points.push({ device: `${prefix}-0`, metric: `m${k}`, ts, value, meta });
      else points.push({ device: `${prefix}-${k}`, metric: 'm0', ts, value, meta });
    }
  }
  const batches: StorePoint[][] = [];
  for (let i = 0; i < points.length; i += BATCH) batches.push(points.slice(i, i + BATCH));
  return batches;
}

async function timeWrites(batches: StorePoint[][], write: (batch: StorePoint[]) => Promise<unknown>): Promise<{ points: number; seconds: number; pointsPerSecond: number }> {
  const points = batches.reduce((n, b) => n + b.length, 0);
  const started = performance.now();
  for (const batch of batches) await write(batch);
  const seconds = (performance.now() - started) / 1000;
  return { points, seconds: round(seconds, 3), pointsPerSecond: Math.round(points / seconds) };
}

function round(n: number, digits: number): number {
  return Math.round(n * 10 ** digits) / 10 ** digits;
}

function summarize(samples: number[]): { p50: number; p95: number; max: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => round(sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!, 2);
  return { p50: at(0.5), p95: at(0.95), max: round(sorted.at(-1)!, 2) };
}

/** The raw-HTTP baseline: the simplest correct line protocol (one line per reading), posted with fetch. */
function baselineLines(batch: StorePoint[]): string {
  const byLine = new Map<string, string[]>();
  for (const p of batch) {
    const key = `readings,device=${p.device},model=TH-1,profile=env,site=Hall\\ 7 |${p.ts}`;
    let fields = byLine.get(key);
    if (fields === undefined) byLine.set(key, (fields = []));
    fields.push(`${p.metric}=${p.value}`);
  }
  let body = '';
  for (const [key, fields] of byLine) {
    const [series, ts] = key.split(' |');
    body += `${series} ${fields.join(',')} ${ts}\n`;
  }
  return body;
}

/** The `influx` library's input: one IPoint per line, built before timing like the other inputs. */
function libraryPoints(batch: StorePoint[]): influx.IPoint[] {
  const byLine = new Map<string, influx.IPoint>();
  for (const p of batch) {
    const key = `${p.device}|${p.ts}`;
    let point = byLine.get(key);
    if (point === undefined) {
      point = { measurement: 'readings', tags: { device: p.device, ...p.meta }, fields: {}, timestamp: p.ts };
      byLine.set(key, point);
    }
    point.fields![p.metric] = p.value;
  }
  return [...byLine.values()];
}

async function queryLatency(store: TimeSeriesStore, device: string, metrics: string[]): Promise<{ ms: { p50: number; p95: number; max: number }; pointsPerSeries: number[]; every: number | undefined }> {
  const query = { device, metrics, from: T0, to: T0 + SECONDS * 1000, maxPoints: 1000 };
  let answer = await store.query(query);
  await store.query(query); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    answer = await store.query(query);
    samples.push(performance.now() - started);
  }
  return { ms: summarize(samples), pointsPerSeries: answer.series.map((s) => s.points.length), every: answer.every };
}

interface WriteRate {
  points: number;
  /** Points per second of each repetition, in run order. */
  runs: number[];
  median: number;
  best: number;
}

/** Runs a write measurement REPS times, each into a fresh database or file. */
async function repeated(measure: (rep: number) => Promise<{ points: number; pointsPerSecond: number }>): Promise<WriteRate> {
  const runs: number[] = [];
  let points = 0;
  for (let rep = 0; rep < REPS; rep++) {
    const result = await measure(rep);
    points = result.points;
    runs.push(result.pointsPerSecond);
  }
  const sorted = [...runs].sort((a, b) => a - b);
  return { points, runs, median: sorted[Math.floor(sorted.length / 2)]!, best: sorted.at(-1)! };
}

async function main(): Promise<void> {
  const server = await startInfluxd();
  const dir = await mkdtemp(join(tmpdir(), 'sensorpipe-bench-store-'));
  const result: Record<string, unknown> = {
    machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version },
    batchPoints: BATCH,
    secondsOfData: SECONDS,
    repetitions: REPS,
    influxd: server.managed ? 'started here (Debian influxd 1.6)' : 'INFLUX_URL',
    // The machine is shared: compare adapters with the baselines of the same run, not across runs.
    loadAverageAtStart: loadavg().map((l) => round(l, 2)),
  };
  try {
    const write: Record<string, Record<string, WriteRate>> = {};
    const url = new URL(server.url);
    for (const shape of ['reading4', 'reading1'] as const) {
      const row: Record<string, WriteRate> = {};
      const batches = dataset(shape, 'dev');
      const lineBatches = batches.map(libraryPoints);

      row.influxdbRawLineProtocol = await repeated(async (rep) => {
        const db = `bench_baseline_${shape}_${rep}`;
        await influxQuery(server.url, `CREATE DATABASE ${db}`);
        return timeWrites(batches, async (batch) => {
          const response = await fetch(`${server.url}/write?db=${db}&precision=ms`, { method: 'POST', body: baselineLines(batch) });
          if (response.status !== 204) throw new Error(`baseline write: HTTP ${response.status} ${await response.text()}`);
        });
      });

      row.influxdbLibraryWritePoints = await repeated(async (rep) => {
        const db = `bench_library_${shape}_${rep}`;
        const client = new influx.InfluxDB({ host: url.hostname, port: Number(url.port), database: db });
        await client.createDatabase(db);
        let i = 0;
        // Its input (one IPoint per line) is built before timing, like the other inputs.
        return timeWrites(batches, () => client.writePoints(lineBatches[i++]!, { precision: 'ms' }));
      });

      row.influxdbAdapter = await repeated(async (rep) => {
        const store = await openInfluxStore({ url: server.url, database: `bench_adapter_${shape}_${rep}` });
        try {
          return await timeWrites(batches, (batch) => store.write(batch));
        } finally {
          await store.close();
        }
      });

      row.embeddedAdapter = await repeated(async (rep) => {
        const store = await openEmbeddedStore({ path: join(dir, `${shape}-${rep}.duckdb`) });
        try {
          return await timeWrites(batches, (batch) => store.write(batch));
        } finally {
          await store.close();
        }
      });
      // The same points again into a file that holds them: every point is a rewrite (replayed spool).
      row.embeddedAdapterRewrite = await repeated(async (rep) => {
        const store = await openEmbeddedStore({ path: join(dir, `${shape}-${rep}.duckdb`) });
        try {
          return await timeWrites(batches, (batch) => store.write(batch));
        } finally {
          await store.close();
        }
      });
      write[shape] = row;
    }
    result.write = write;

    // Queries over the first repetition's reading4 data (86,400 points per metric at 1 s).
    const influxStore = await openInfluxStore({ url: server.url, database: 'bench_adapter_reading4_0' });
    const embedded = await openEmbeddedStore({ path: join(dir, 'reading4-0.duckdb') });
    result.query = {
      description: `${SECONDS / 3600} h of 1 s data, mean with min/max envelope, maxPoints 1000, ${RUNS} runs after a warm-up`,
      influxdbOneSeries: await queryLatency(influxStore, 'dev-0', ['m0']),
      embeddedOneSeries: await queryLatency(embedded, 'dev-0', ['m0']),
      influxdbFourSeries: await queryLatency(influxStore, 'dev-0', ['m0', 'm1', 'm2', 'm3']),
      embeddedFourSeries: await queryLatency(embedded, 'dev-0', ['m0', 'm1', 'm2', 'm3']),
    };
    await influxStore.close();
    await embedded.close();
    result.loadAverageAtEnd = loadavg().map((l) => round(l, 2));

    const q = result.query as Record<string, { ms: { p50: number } }>;
    result.targets = {
      basis: 'median of the repetitions, reading4 shape; query p50',
      influxdbWrite150kPerSecond: write.reading4!.influxdbAdapter!.median >= 150_000,
      embeddedWrite300kPerSecond: write.reading4!.embeddedAdapter!.median >= 300_000,
      influxdbQuery100ms: q.influxdbOneSeries!.ms.p50 <= 100,
      embeddedQuery50ms: q.embeddedOneSeries!.ms.p50 <= 50,
    };
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

await main();
