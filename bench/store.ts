/**
 * Store benchmark: write throughput (batches of 5,000 points, one batch in flight, as ingest writes) and
 * the latency of a 24-hour, 1-second-resolution query downsampled to ≤ 1,000 points, per adapter, each
 * beside a baseline of its own kind:
 *   - the InfluxDB adapter beside two writers on the same influxd: raw line protocol posted with fetch,
 *     and the `influx` library's writePoints;
 *   - the embedded adapter beside DuckDB's own appender writing the same rows into a plain table of the
 *     same columns, one transaction per batch (durable per batch, as the adapter), in the same folder.
 * Every writer's input is built before its timing starts (the line-protocol bodies, the library's
 * IPoints; the baselines do only what a writer must), and after every repetition the points that landed
 * are counted in the database written to (`landed`, beside `points` sent; `allLanded`): a rate whose
 * points did not all land is not a rate. A point is one value of one metric of one device at one time.
 *
 *   npx tsx bench/store.ts [--seconds 86400] [--runs 20] [--reps 3]
 *
 * Each write figure is the median of `--reps` repetitions (each into a fresh database or file) with its
 * spread; each query figure is the median over the repetitions' databases of the p50 of `--runs` runs.
 * Starts its own influxd (or uses INFLUX_URL) and an embedded store in a temporary folder. Two data
 * shapes: `reading4` (a reading carries 4 metrics, so 4 points share one line of line protocol — the
 * common case) and `reading1` (one metric per reading, 4 devices: one point per line, the worst case).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import influx from 'influx';
import { openEmbeddedStore } from '../store/embedded.ts';
import { openInfluxStore } from '../store/influx1.ts';
import type { StorePoint, TimeSeriesStore } from '../store/index.ts';
import { influxQuery, startInfluxd } from '../harness/influxd.ts';
import { repeated as repeatedFigure } from './stats.ts';

const BATCH = 5000;
const T0 = Date.UTC(2026, 0, 5);
const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const SECONDS = arg('seconds', 86_400);
const RUNS = arg('runs', 20);
const REPS = Math.max(1, arg('reps', arg('repeats', 3)));

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

/** The raw-HTTP baseline's body: the simplest correct line protocol (one line per reading), built before timing. */
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
  /** (best − worst) / median. */
  relativeSpread: number | null;
  /** Points counted in the database after each repetition (`points` were sent each time). */
  landed: number[];
  allLanded: boolean;
}

/** Runs a write measurement REPS times, each into a fresh database or file; `count` reads back what landed. */
async function repeated(measure: (rep: number) => Promise<{ points: number; pointsPerSecond: number; landed: number }>): Promise<WriteRate> {
  const runs: number[] = [];
  const landed: number[] = [];
  let points = 0;
  for (let rep = 0; rep < REPS; rep++) {
    const result = await measure(rep);
    points = result.points;
    runs.push(result.pointsPerSecond);
    landed.push(result.landed);
  }
  const figure = repeatedFigure(runs);
  return { points, runs, median: figure.median!, best: figure.max!, relativeSpread: figure.relativeSpread, landed, allLanded: landed.every((n) => n === points) };
}

/** Points in an influxd database written by a baseline: count(*) gives one count per field; a point is one field. */
async function influxPoints(url: string, db: string): Promise<number> {
  const answer = (await influxQuery(url, 'SELECT count(*) FROM readings', db)) as { results?: { series?: { values?: unknown[][] }[] }[] };
  const row = answer.results?.[0]?.series?.[0]?.values?.[0] ?? [];
  return row.slice(1).reduce<number>((sum, n) => sum + (typeof n === 'number' ? n : 0), 0);
}

/**
 * The embedded baseline: DuckDB's appender into a plain table with the adapter's columns, one transaction
 * per batch. No idempotency (no high-water marks, no rewrite path), no metadata, no checks.
 */
async function duckdbAppenderWrites(path: string, batches: StorePoint[][]): Promise<{ points: number; seconds: number; pointsPerSecond: number; landed: number }> {
  const instance = await DuckDBInstance.create(path);
  const connection = await instance.connect();
  try {
    await connection.run('CREATE TABLE readings (device VARCHAR NOT NULL, metric VARCHAR NOT NULL, ts BIGINT NOT NULL, value DOUBLE NOT NULL)');
    const timed = await timeWrites(batches, async (batch) => {
      await connection.run('BEGIN TRANSACTION');
      const appender = await connection.createAppender('readings');
      try {
        for (const p of batch) {
          appender.appendVarchar(p.device);
          appender.appendVarchar(p.metric);
          appender.appendBigInt(BigInt(p.ts));
          appender.appendDouble(p.value);
          appender.endRow();
        }
        appender.flushSync();
      } finally {
        appender.closeSync();
      }
      await connection.run('COMMIT');
    });
    const count = await connection.runAndReadAll('SELECT count(*) FROM readings');
    return { ...timed, landed: Number(count.getRows()[0]?.[0] ?? 0) };
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
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
      // Every writer's input, built before its timing starts.
      const bodies = batches.map(baselineLines);
      const lineBatches = batches.map(libraryPoints);

      row.influxdbRawLineProtocol = await repeated(async (rep) => {
        const db = `bench_baseline_${shape}_${rep}`;
        await influxQuery(server.url, `CREATE DATABASE ${db}`);
        let i = 0;
        const timed = await timeWrites(batches, async () => {
          const response = await fetch(`${server.url}/write?db=${db}&precision=ms`, { method: 'POST', body: bodies[i++]! });
          if (response.status !== 204) throw new Error(`baseline write: HTTP ${response.status} ${await response.text()}`);
        });
        return { ...timed, landed: await influxPoints(server.url, db) };
      });

      row.influxdbLibraryWritePoints = await repeated(async (rep) => {
        const db = `bench_library_${shape}_${rep}`;
        const client = new influx.InfluxDB({ host: url.hostname, port: Number(url.port), database: db });
        await client.createDatabase(db);
        let i = 0;
        const timed = await timeWrites(batches, () => client.writePoints(lineBatches[i++]!, { precision: 'ms' }));
        return { ...timed, landed: await influxPoints(server.url, db) };
      });

      row.influxdbAdapter = await repeated(async (rep) => {
        const store = await openInfluxStore({ url: server.url, database: `bench_adapter_${shape}_${rep}` });
        try {
          const timed = await timeWrites(batches, (batch) => store.write(batch));
          return { ...timed, landed: await store.count() };
        } finally {
          await store.close();
        }
      });

      row.embeddedDuckdbAppender = await repeated((rep) => duckdbAppenderWrites(join(dir, `${shape}-${rep}-baseline.duckdb`), batches));

      row.embeddedAdapter = await repeated(async (rep) => {
        const store = await openEmbeddedStore({ path: join(dir, `${shape}-${rep}.duckdb`) });
        try {
          const timed = await timeWrites(batches, (batch) => store.write(batch));
          return { ...timed, landed: await store.count() };
        } finally {
          await store.close();
        }
      });
      // The same points again into a file that holds them: every point is a rewrite (replayed spool).
      // Idempotent: the count after it is the same.
      row.embeddedAdapterRewrite = await repeated(async (rep) => {
        const store = await openEmbeddedStore({ path: join(dir, `${shape}-${rep}.duckdb`) });
        try {
          const timed = await timeWrites(batches, (batch) => store.write(batch));
          return { ...timed, landed: await store.count() };
        } finally {
          await store.close();
        }
      });
      write[shape] = row;
    }
    result.write = write;

    // Queries over each repetition's reading4 data (86,400 points per metric at 1 s): the p50 of RUNS
    // runs per database, then the median over the databases.
    const queries: Record<string, Awaited<ReturnType<typeof queryLatency>>[]> = { influxdbOneSeries: [], embeddedOneSeries: [], influxdbFourSeries: [], embeddedFourSeries: [] };
    for (let rep = 0; rep < REPS; rep++) {
      const influxStore = await openInfluxStore({ url: server.url, database: `bench_adapter_reading4_${rep}` });
      const embedded = await openEmbeddedStore({ path: join(dir, `reading4-${rep}.duckdb`) });
      queries.influxdbOneSeries!.push(await queryLatency(influxStore, 'dev-0', ['m0']));
      queries.embeddedOneSeries!.push(await queryLatency(embedded, 'dev-0', ['m0']));
      queries.influxdbFourSeries!.push(await queryLatency(influxStore, 'dev-0', ['m0', 'm1', 'm2', 'm3']));
      queries.embeddedFourSeries!.push(await queryLatency(embedded, 'dev-0', ['m0', 'm1', 'm2', 'm3']));
      await influxStore.close();
      await embedded.close();
    }
    const queryFigure = (runs: Awaited<ReturnType<typeof queryLatency>>[]) => ({
      ms: { p50: repeatedFigure(runs.map((r) => r.ms.p50)).median!, p95: repeatedFigure(runs.map((r) => r.ms.p95)).median! },
      p50: repeatedFigure(runs.map((r) => r.ms.p50)),
      pointsPerSeries: runs[0]!.pointsPerSeries,
      every: runs[0]!.every,
      perDatabase: runs.map((r) => r.ms),
    });
    result.query = {
      description: `${SECONDS / 3600} h of 1 s data, mean with min/max envelope, maxPoints 1000, ${RUNS} runs after a warm-up, on each of ${REPS} databases`,
      ...Object.fromEntries(Object.entries(queries).map(([name, runs]) => [name, queryFigure(runs)])),
    };
    result.loadAverageAtEnd = loadavg().map((l) => round(l, 2));

    const q = result.query as unknown as Record<string, { ms: { p50: number } }>;
    result.targets = {
      basis: 'median of the repetitions, reading4 shape, every point landed; query: median over the databases of the p50',
      influxdbWrite150kPerSecond: write.reading4!.influxdbAdapter!.median >= 150_000 && write.reading4!.influxdbAdapter!.allLanded,
      embeddedWrite300kPerSecond: write.reading4!.embeddedAdapter!.median >= 300_000 && write.reading4!.embeddedAdapter!.allLanded,
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
