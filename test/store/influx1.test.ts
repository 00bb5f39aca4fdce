/**
 * The store contract against a real influxd (Debian's InfluxDB 1.6, or INFLUX_URL), plus the error
 * classification that only a real server can show: influxd stopped → retryable; a point whose field has
 * the wrong type → refused alone while the rest of its batch is written.
 */
import { randomUUID } from 'node:crypto';
import { createServer as createNetServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSensorpipeError, type SensorpipeError } from '../../core/errors.ts';
import { openInfluxStore } from '../../store/influx1.ts';
import { isRetryableStoreError, openStore, type StorePoint, type TimeSeriesStore } from '../../store/index.ts';
import { influxQuery, startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { describeStoreContract, T0 } from './contract.ts';

let server: InfluxServer;

// File-level hooks run around every describe block's own hooks: one influxd for the whole file.
beforeAll(async () => {
  server = await startInfluxd();
});
afterAll(async () => {
  await server?.close();
});

const database = () => `sp_${randomUUID().slice(0, 8)}`;

describeStoreContract('InfluxDB 1.x API', async () => {
  const { url } = server;
  const db = database();
  let store = await openInfluxStore({ url, database: db });
  return {
    store,
    async reopen() {
      await store.close();
      store = await openInfluxStore({ url, database: db });
      return store;
    },
    async close() {
      await store.close();
    },
  };
});

describe('InfluxDB adapter against a real influxd', () => {
  let url: string;
  beforeAll(() => {
    url = server.url;
  });

  it('is what openStore opens when influxUrl is set, and writes the documented schema', async () => {
    const db = database();
    const store = await openStore({ dataDir: '/nonexistent', influxUrl: url, influxDatabase: db });
    expect(store.kind).toBe('influxdb');
    await store.write([
      { device: 'schema', metric: 'temperature', ts: T0, value: 21.5, seq: 41, meta: { site: 'Hall 7', model: 'TH-1', profile: 'env' } },
      { device: 'schema', metric: 'humidity', ts: T0, value: 40, seq: 41, meta: { site: 'Hall 7', model: 'TH-1', profile: 'env' } },
    ]);
    // What a Grafana or `influx` CLI user runs (store/SCHEMA.md): one row per device and time.
    const answer = (await influxQuery(url, `SELECT * FROM readings WHERE device = 'schema' AND time >= ${T0}ms AND time < ${T0 + 1000}ms`, db)) as {
      results: { series: { columns: string[]; values: unknown[][] }[] }[];
    };
    const series = answer.results[0]!.series[0]!;
    const row = Object.fromEntries(series.columns.map((c, i) => [c, series.values[0]![i]]));
    expect(row).toEqual({ time: T0, device: 'schema', site: 'Hall 7', model: 'TH-1', profile: 'env', temperature: 21.5, humidity: 40, 'reading-seq': 41, trust: 'signed' });
    const fieldTypes = (await influxQuery(url, 'SHOW FIELD KEYS FROM readings', db)) as { results: { series: { values: string[][] }[] }[] };
    expect(fieldTypes.results[0]!.series[0]!.values).toEqual([
      ['humidity', 'float'],
      ['reading-seq', 'integer'],
      ['temperature', 'float'],
    ]);
    await store.close();
  });

  it('merges the trust levels of one device back together: raw in time order, each window over both, a raw page over both', async () => {
    const store = await openInfluxStore({ url, database: database() });
    await store.write([
      { device: 'mixed', metric: 'temperature', ts: T0, value: 5 },
      { device: 'mixed', metric: 'temperature', ts: T0 + 2000, value: 1 },
      { device: 'mixed', metric: 'temperature', ts: T0 + 1000, value: -3, trust: 'broker' },
      { device: 'mixed', metric: 'temperature', ts: T0 + 3000, value: 9, trust: 'broker' },
      // The same identity in both tag sets (a device made broker-authenticated and back): two copies in InfluxDB.
      { device: 'mixed', metric: 'temperature', ts: T0 + 2000, value: 1, trust: 'broker' },
    ]);
    const raw = await store.query({ device: 'mixed', from: T0, to: T0 + 10_000, mode: 'raw' });
    expect(raw.series).toEqual([{ metric: 'temperature', points: [5, -3, 1, 9].map((value, i) => ({ ts: T0 + i * 1000, value })), trust: ['broker', 'signed'] }]);
    const cut = await store.query({ device: 'mixed', from: T0, to: T0 + 10_000, mode: 'raw', maxPoints: 2 });
    expect(cut).toMatchObject({ truncated: true, nextFrom: T0 + 2000, series: [{ points: [{ ts: T0, value: 5 }, { ts: T0 + 1000, value: -3 }] }] });
    for (const [fn, value] of [['mean', 3], ['min', -3], ['max', 9], ['count', 4]] as const) {
      const windows = await store.query({ device: 'mixed', metrics: ['temperature'], from: T0, to: T0 + 10_000, every: 10_000, fn });
      expect(windows.series, fn).toEqual([{ metric: 'temperature', points: [{ ts: T0, value, min: -3, max: 9 }], trust: ['broker', 'signed'] }]);
    }
    // Pages of two rows: a full page ends before its last time (another tag set's row may follow it).
    const values: number[] = [];
    let page = await store.rawPage({ device: 'mixed', from: T0, to: T0 + 10_000, limit: 2 });
    for (let pages = 1; ; pages++) {
      expect(page.rows.length).toBeLessThanOrEqual(2);
      values.push(...page.rows.map((r) => r.value));
      if (page.next === undefined || pages > 10) break;
      page = await store.rawPage({ device: 'mixed', from: T0, to: T0 + 10_000, limit: 2, after: page.next });
    }
    expect(values).toEqual([5, -3, 1, 9]);
    await store.close();
  });

  it('a raw page never ends inside a time that two tag sets hold (one row each): every point once, whatever the page size', async () => {
    const store = await openInfluxStore({ url, database: database() });
    const points: StorePoint[] = [];
    // Each time: a signed row (site a: `temperature`) and then, sorted after it, a broker row (site b: `humidity`).
    for (let i = 0; i < 10; i++) {
      points.push({ device: 'split', metric: 'temperature', ts: T0 + i * 1000, value: i, meta: { site: 'a' } });
      points.push({ device: 'split', metric: 'humidity', ts: T0 + i * 1000, value: 100 + i, meta: { site: 'b' }, trust: 'broker' });
    }
    await store.write(points);
    const expected = points.map((p) => ({ ts: p.ts, metric: p.metric, value: p.value })).sort((a, b) => a.ts - b.ts || (a.metric < b.metric ? -1 : 1));
    for (const limit of [1, 2, 3, 4, 5, 7]) {
      const rows: unknown[] = [];
      let page = await store.rawPage({ device: 'split', from: T0, to: T0 + 60_000, limit });
      for (let pages = 1; ; pages++) {
        expect(page.rows.length).toBeLessThanOrEqual(limit);
        rows.push(...page.rows);
        if (page.next === undefined || pages > 100) break;
        page = await store.rawPage({ device: 'split', from: T0, to: T0 + 60_000, limit, after: page.next });
      }
      expect(rows, `pages of ${limit}`).toEqual(expected);
    }
    await store.close();
  });

  it('a raw page whose reader has gone is not read: its query is cancelled', async () => {
    const store = await openInfluxStore({ url, database: database() });
    await store.write([{ device: 'gone', metric: 'temperature', ts: T0, value: 1 }]);
    expect((await store.rawPage({ device: 'gone', from: T0, to: T0 + 1000 })).rows).toHaveLength(1);
    const gone = new AbortController();
    gone.abort();
    const err = await store.rawPage({ device: 'gone', from: T0, to: T0 + 1000, signal: gone.signal }).then(() => undefined, (e: unknown) => e);
    expect(isSensorpipeError(err) && err.code).toBe('STORE_UNAVAILABLE');
    await store.close();
  });

  it('refuses a point whose field has the wrong type, alone, and writes the rest of its batch', async () => {
    const db = database();
    const store = await openInfluxStore({ url, database: db });
    // Someone else wrote `temperature` as an integer in this shard (the same week as T0).
    const seeded = await fetch(`${url}/write?db=${db}&precision=ms`, { method: 'POST', body: `readings,device=other temperature=7i ${T0 + 1}` });
    expect(seeded.status).toBe(204);
    const batch: StorePoint[] = [];
    for (let i = 0; i < 300; i++) {
      batch.push({ device: 'conflict', metric: 'humidity', ts: T0 + i * 1000, value: i });
      if (i % 100 === 7) batch.push({ device: 'conflict', metric: 'temperature', ts: T0 + i * 1000, value: 20 + i });
    }
    const result = await store.write(batch);
    const refusedIndexes = batch.flatMap((p, i) => (p.metric === 'temperature' ? [i] : []));
    expect(result.refused.map((r) => r.index)).toEqual(refusedIndexes);
    expect(result.refused[0]!.message).toMatch(/field type conflict/);
    expect(result.written).toBe(300);
    // Every humidity point is there, including those that shared a line with a refused temperature.
    expect(await store.count({ device: 'conflict' })).toBe(300);
    const humidity = await store.query({ device: 'conflict', metrics: ['humidity', 'temperature'], from: T0, to: T0 + 300_000, mode: 'raw' });
    expect(humidity.series[0]!.points.map((p) => p.value)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(humidity.series[1]!.points).toEqual([]);
    await store.close();
  });

  it('influxd stopped: writes and queries fail as retryable STORE_UNAVAILABLE, health says so, and it recovers', async (ctx) => {
    if (!server.managed) ctx.skip(); // an external INFLUX_URL server cannot be stopped from here
    const db = database();
    const store: TimeSeriesStore = await openInfluxStore({ url, database: db });
    const point: StorePoint = { device: 'outage', metric: 'temperature', ts: T0, value: 1 };
    await store.write([point]);
    await server.stop();
    try {
      const writeErr = await store.write([{ ...point, value: 2 }]).then(() => undefined, (e: unknown) => e);
      expect(isSensorpipeError(writeErr, 'STORE_UNAVAILABLE')).toBe(true);
      expect(isRetryableStoreError(writeErr)).toBe(true);
      const queryErr = await store.query({ device: 'outage', from: T0, to: T0 + 1000, mode: 'raw' }).then(() => undefined, (e: unknown) => e);
      expect(isSensorpipeError(queryErr, 'STORE_UNAVAILABLE')).toBe(true);
      expect((await store.health()).ok).toBe(false);
    } finally {
      await server.start();
    }
    // The same batch, retried after the outage, is written once.
    await store.write([{ ...point, value: 2 }]);
    expect((await store.health()).ok).toBe(true);
    expect(await store.count({ device: 'outage' })).toBe(1);
    await store.close();
  });

  it('answers 5xx and 429 as retryable, 401 as retryable (credentials are fixed without touching the data)', async () => {
    const { createServer } = await import('node:http');
    const statuses = [500, 503, 429, 401];
    // A 429 and a 503 that say when to come back, in both forms of Retry-After.
    const retryAfter: Record<number, string> = { 429: '3', 503: new Date(Date.now() + 60_000).toUTCString() };
    let next = 0;
    const fake = createServer((req, res) => {
      req.resume();
      const status = statuses[next++ % statuses.length]!;
      res.writeHead(status, { 'content-type': 'application/json', ...(retryAfter[status] === undefined ? {} : { 'retry-after': retryAfter[status] }) });
      res.end('{"error":"nope"}');
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const port = (fake.address() as { port: number }).port;
    // Mocked server: InfluxDB 1.6 cannot be made to answer these on demand.
    const store = await openInfluxStore({ url: `http://127.0.0.1:${port}`, database: 'x', createDatabase: false });
    try {
      for (const status of statuses) {
        const err = await store.write([{ device: 'd', metric: 'temperature', ts: T0, value: 1 }]).then(() => undefined, (e: unknown) => e);
        expect(isSensorpipeError(err, 'STORE_UNAVAILABLE'), String(status)).toBe(true);
        expect((err as Error).message).toContain(String(status));
        // ingest's spool replay waits what the server asked for (ingest/pipeline.ts retryAfterMs).
        const wait = (err as SensorpipeError).details?.retryAfterMs;
        if (status === 429) expect(wait).toBe(3000);
        else if (status === 503) expect(wait).toBeGreaterThan(55_000);
        else expect(wait).toBeUndefined();
      }
    } finally {
      await store.close();
      await new Promise((resolve) => fake.close(resolve));
    }
  });

  it('answers a server that accepts the connection but never replies as a retryable timeout', async () => {
    const sockets: Socket[] = [];
    const silent = createNetServer((socket) => sockets.push(socket)); // mock: holds the request forever
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    const store = await openInfluxStore({ url: `http://127.0.0.1:${port}`, database: 'x', createDatabase: false, writeTimeoutMs: 300 });
    try {
      const err = await store.write([{ device: 'd', metric: 'temperature', ts: T0, value: 1 }]).then(() => undefined, (e: unknown) => e);
      expect(isSensorpipeError(err, 'STORE_UNAVAILABLE')).toBe(true);
      expect((err as Error).message).toMatch(/timed out/);
    } finally {
      await store.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
