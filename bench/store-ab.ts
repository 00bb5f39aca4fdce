/**
 * History query latency of this checkout's store adapters beside another checkout's (a before/after of a
 * change to the query path), in one process, on the same data, queries alternating between the two
 * sides so that a drift of the machine hits both alike. Prints JSON: each repetition's p50 per side and
 * shape, and their medians.
 *
 *   git worktree add /tmp/before <rev> && ln -s "$PWD/node_modules" /tmp/before/node_modules
 *   npx tsx bench/store-ab.ts --before-root /tmp/before [--runs 60] [--repeats 3]
 *
 * Data: one device, 4 metrics, one point a second for 24 h (345,600 points), written once with this
 * checkout's adapters into one influxd database and one embedded file (copied, so each side has its own).
 * Query: the 24 h downsampled to ≤ 1,000 points, of 1 metric and of all 4, as the dashboard asks.
 */
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openEmbeddedStore } from '../store/embedded.ts';
import { openInfluxStore } from '../store/influx1.ts';
import type { StorePoint, TimeSeriesStore } from '../store/index.ts';
import { startInfluxd } from '../harness/influxd.ts';
import { argValue, machine, printJson } from './lib.ts';
import { repeated } from './stats.ts';


const beforeRoot = resolve(argValue('before-root', ''));
const RUNS = Number(argValue('runs', '60'));
const REPEATS = Number(argValue('repeats', '3'));
if (argValue('before-root', '') === '' || !(RUNS > 0) || !(REPEATS > 0)) {
  process.stderr.write('usage: npx tsx bench/store-ab.ts --before-root DIR [--runs 60] [--repeats 3]\n');
  process.exit(2);
}
const before = {
  embedded: (await import(pathToFileURL(join(beforeRoot, 'store/embedded.ts')).href)) as { openEmbeddedStore: typeof openEmbeddedStore },
  influx: (await import(pathToFileURL(join(beforeRoot, 'store/influx1.ts')).href)) as { openInfluxStore: typeof openInfluxStore },
};

const T0 = Date.UTC(2026, 0, 5);
const SECONDS = 86_400;
const meta = { site: 'Hall 7', model: 'TH-1', profile: 'env' };
const dir = await mkdtemp(join(tmpdir(), 'store-ab-'));
const influxd = await startInfluxd();
const writerInflux = await openInfluxStore({ url: influxd.url, database: 'ab' });
const writerEmbedded = await openEmbeddedStore({ path: join(dir, 'after.duckdb') });
let batch: StorePoint[] = [];
for (let i = 0; i < SECONDS; i++) {
  for (let k = 0; k < 4; k++) batch.push({ device: 'dev-0', metric: `m${k}`, ts: T0 + i * 1000, value: Math.round(Math.sin(i / 600 + k) * 10_000) / 100, meta });
  if (batch.length >= 5000 || i === SECONDS - 1) {
    await writerInflux.write(batch);
    await writerEmbedded.write(batch);
    batch = [];
  }
}
await writerEmbedded.close();
await copyFile(join(dir, 'after.duckdb'), join(dir, 'before.duckdb'));
const stores: Record<string, TimeSeriesStore> = {
  'influx before': await before.influx.openInfluxStore({ url: influxd.url, database: 'ab' }),
  'influx after': writerInflux,
  'embedded before': await before.embedded.openEmbeddedStore({ path: join(dir, 'before.duckdb') }),
  'embedded after': await openEmbeddedStore({ path: join(dir, 'after.duckdb') }),
};

const p50 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const perRepeat: Record<string, number[]> = {};
const loads: number[][] = [];
for (let r = 0; r < REPEATS; r++) {
  loads.push(loadavg());
  for (const metrics of [['m0'], ['m0', 'm1', 'm2', 'm3']]) {
    const query = { device: 'dev-0', metrics, from: T0, to: T0 + SECONDS * 1000, maxPoints: 1000 };
    for (const store of Object.values(stores)) await store.query(query); // warm
    const samples: Record<string, number[]> = {};
    for (let run = 0; run < RUNS; run++) {
      for (const [name, store] of Object.entries(stores)) {
        const start = performance.now();
        await store.query(query);
        (samples[name] ??= []).push(performance.now() - start);
      }
    }
    for (const [name, xs] of Object.entries(samples)) (perRepeat[`${name}, ${metrics.length} metric${metrics.length > 1 ? 's' : ''}`] ??= []).push(Math.round(p50(xs) * 100) / 100);
  }
}
for (const store of Object.values(stores)) await store.close();
await influxd.close();
await rm(dir, { recursive: true, force: true });
printJson({
  machine: machine(),
  beforeRoot,
  runs: RUNS,
  loadavgBeforeEachRepeat: loads.map((l) => l.map((x) => Math.round(x * 100) / 100)),
  p50Ms: Object.fromEntries(Object.entries(perRepeat).map(([name, xs]) => [name, repeated(xs)])),
});
