/**
 * The store contract: the same tests, run against every adapter (embedded DuckDB, InfluxDB 1.x API,
 * InfluxDB 2.x native API). Each adapter's test file calls `describeStoreContract` with a way to open
 * (and re-open) its store. Tests use their own device ids, so they share one store and one server.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSensorpipeError, type ErrorCode } from '../../core/errors.ts';
import type { DeviceMeta } from '../../core/schemas.ts';
import { isRetryableStoreError, type QueryResult, type RangeQuery, type RawPageQuery, type RawRow, type StorePoint, type TimeSeriesStore } from '../../store/index.ts';

export interface StoreRig {
  store: TimeSeriesStore;
  /** Closes the store and opens it again on the same data (a process restart). */
  reopen(): Promise<TimeSeriesStore>;
  close(): Promise<void>;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/**
 * Midnight UTC three days ago: recent enough for any bucket's retention period (a 2.x run may use a
 * persistent bucket), and far enough back that the 24-hour data set lies wholly in the past.
 */
export const T0 = Math.floor(Date.now() / DAY) * DAY - 3 * DAY;
/**
 * Device ids of this run: a store that persists between runs (an external InfluxDB 2.x bucket) must not
 * see the last run's points in this run's counts.
 */
const RUN = randomBytes(3).toString('hex');
export const dev = (name: string): string => `${name}-${RUN}`;

export async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isSensorpipeError(err) ? err.code : err).toBe(code);
}

function raw(store: TimeSeriesStore, device: string, metrics: string[] | undefined, from: number, to: number, maxPoints?: number): Promise<QueryResult> {
  const query: RangeQuery = { device, from, to, mode: 'raw' };
  if (metrics !== undefined) query.metrics = metrics;
  if (maxPoints !== undefined) query.maxPoints = maxPoints;
  return store.query(query);
}

function pointsOf(result: QueryResult, metric: string): { ts: number; value: number }[] {
  const series = result.series.find((s) => s.metric === metric);
  return (series?.points ?? []).map((p) => ({ ts: p.ts, value: p.value }));
}

/** Every page of a raw read, with the pages' sizes. */
async function allPages(store: TimeSeriesStore, query: RawPageQuery): Promise<{ rows: RawRow[]; pages: number[] }> {
  const rows: RawRow[] = [];
  const pages: number[] = [];
  let after = query.after;
  for (;;) {
    const page = await store.rawPage({ ...query, ...(after === undefined ? {} : { after }) });
    rows.push(...page.rows);
    pages.push(page.rows.length);
    if (page.next === undefined) return { rows, pages };
    after = page.next;
  }
}

const byTsThenMetric = (a: RawRow, b: RawRow): number => a.ts - b.ts || (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0);

export function describeStoreContract(name: string, openRig: () => Promise<StoreRig>): void {
  describe(`store contract: ${name}`, () => {
    let rig: StoreRig;
    let store: TimeSeriesStore;

    beforeAll(async () => {
      rig = await openRig();
      store = rig.store;
    });
    afterAll(async () => {
      await rig?.close();
    });

    it('returns values and millisecond timestamps exactly as written', async () => {
      const values = [0.1, -273.15, 1e-300, 1.7976931348623157e308, 5e-324, Math.PI, 42, -1, 123456789.12345679, 1 / 3, 0];
      const points: StorePoint[] = values.map((value, i) => ({ device: dev('exact'), metric: 'temperature', ts: T0 + i * 7 + 1, value }));
      points.push({ device: dev('exact'), metric: 'humidity', ts: T0 + 1, value: 55.5 });
      const result = await store.write(points);
      expect(result).toEqual({ written: points.length, refused: [] });

      const answer = await raw(store, dev('exact'), ['temperature', 'humidity'], T0, T0 + HOUR);
      expect(pointsOf(answer, 'temperature')).toEqual(values.map((value, i) => ({ ts: T0 + i * 7 + 1, value })));
      expect(pointsOf(answer, 'humidity')).toEqual([{ ts: T0 + 1, value: 55.5 }]);
      expect(answer.truncated).toBe(false);
      // Without metrics: every metric the device has in the range, sorted by name.
      const all = await raw(store, dev('exact'), undefined, T0, T0 + HOUR);
      expect(all.series.map((s) => s.metric)).toEqual(['humidity', 'temperature']);
    });

    it('is idempotent: writing a point again leaves one point, with the last value', async () => {
      const points: StorePoint[] = [];
      for (let i = 0; i < 100; i++) points.push({ device: dev('idem'), metric: 'pressure', ts: T0 + i * 1000, value: i, meta: { site: 'north' } });
      await store.write(points);
      await store.write(points.map((p) => ({ ...p, value: p.value + 0.5 })));
      // Twice in one batch: the later one wins.
      await store.write([
        { device: dev('idem'), metric: 'pressure', ts: T0, value: -1, meta: { site: 'north' } },
        { device: dev('idem'), metric: 'pressure', ts: T0, value: -2, meta: { site: 'north' } },
      ]);
      expect(await store.count({ device: dev('idem') })).toBe(100);
      const answer = pointsOf(await raw(store, dev('idem'), ['pressure'], T0, T0 + HOUR), 'pressure');
      expect(answer).toHaveLength(100);
      expect(answer[0]).toEqual({ ts: T0, value: -2 });
      expect(answer[99]).toEqual({ ts: T0 + 99_000, value: 99.5 });
    });

    it('rewriting a point after its metadata changed still reads back as one point; meta follows the newest', async () => {
      await store.write([{ device: dev('moved'), metric: 'temperature', ts: T0, value: 1, meta: { site: 'old site' } }]);
      await store.write([
        { device: dev('moved'), metric: 'temperature', ts: T0, value: 1, meta: { site: 'new site' } },
        { device: dev('moved'), metric: 'temperature', ts: T0 + 1000, value: 2, meta: { site: 'new site' } },
      ]);
      expect(pointsOf(await raw(store, dev('moved'), ['temperature'], T0, T0 + HOUR), 'temperature')).toEqual([
        { ts: T0, value: 1 },
        { ts: T0 + 1000, value: 2 },
      ]);
      expect(await store.meta(dev('moved'))).toEqual({ site: 'new site' });
    });

    it("stores each reading's seq and reads it back; the seq is not a metric and not a point", async () => {
      const meta: DeviceMeta = { site: 'north' };
      const reading = (seq: number, ts: number, values: Record<string, number>): StorePoint[] =>
        Object.entries(values).map(([metric, value]) => ({ device: dev('seq'), metric, ts, value, seq, meta }));
      await store.write([...reading(41, T0 + 1000, { temperature: 21.5, humidity: 40 }), ...reading(42, T0 + 2000, { temperature: 21.6 }), ...reading(2 ** 53 - 1, T0 + 3000, { temperature: 1 })]);
      // A point written without a seq (an older spool record) is stored as before, with none.
      await store.write([{ device: dev('seq'), metric: 'temperature', ts: T0 + 4000, value: 7, meta }]);
      expect(await store.seqs(dev('seq'), T0, T0 + HOUR)).toEqual([
        { ts: T0 + 1000, seq: 41 },
        { ts: T0 + 2000, seq: 42 },
        { ts: T0 + 3000, seq: 2 ** 53 - 1 },
      ]);
      expect(await store.seqs(dev('seq'), T0 + 1001, T0 + 3000)).toEqual([{ ts: T0 + 2000, seq: 42 }]);
      // A redelivery rewrites the reading in place: one time, one seq.
      await store.write(reading(42, T0 + 2000, { temperature: 21.6 }));
      // The same seq written again at another time (what a duplicate write would be) shows as two rows.
      await store.write(reading(41, T0 + 5000, { temperature: 21.5, humidity: 40 }));
      expect(await store.seqs(dev('seq'), T0, T0 + HOUR)).toEqual([
        { ts: T0 + 1000, seq: 41 },
        { ts: T0 + 2000, seq: 42 },
        { ts: T0 + 3000, seq: 2 ** 53 - 1 },
        { ts: T0 + 5000, seq: 41 },
      ]);
      // Values, metrics, counts and latest values know nothing of it.
      expect(await store.count({ device: dev('seq') })).toBe(7);
      const all = await raw(store, dev('seq'), undefined, T0, T0 + HOUR);
      expect(all.series.map((s) => s.metric)).toEqual(['humidity', 'temperature']);
      expect(pointsOf(all, 'temperature').map((p) => p.value)).toEqual([21.5, 21.6, 1, 7, 21.5]);
      expect((await store.latest(dev('seq'), T0)).map((v) => v.metric)).toEqual(['humidity', 'temperature']);
      expect((await store.latestAll(T0)).filter((v) => v.device === dev('seq')).map((v) => v.metric)).toEqual(['humidity', 'temperature']);
      expect(await store.meta(dev('seq'))).toEqual(meta);
      expect(await store.seqs(dev('nobody'), T0, T0 + HOUR)).toEqual([]);
    });

    it('refuses a point whose seq is not an integer from 0 to 2^53 - 1, alone', async () => {
      const point = (seq: number, ts: number): StorePoint => ({ device: dev('badseq'), metric: 'temperature', ts: T0 + ts, value: 1, seq });
      const result = await store.write([point(1, 0), point(-1, 1000), point(1.5, 2000), point(2 ** 53, 3000), point(Number.NaN, 4000), point(2, 5000)]);
      expect(result.refused.map((r) => r.index)).toEqual([1, 2, 3, 4]);
      expect(await store.seqs(dev('badseq'), T0, T0 + HOUR)).toEqual([
        { ts: T0, seq: 1 },
        { ts: T0 + 5000, seq: 2 },
      ]);
    });

    it('stores each point with its trust: signed, or broker for a broker-authenticated device; a rewrite takes the new one', async () => {
      const signed = dev('trust-signed');
      const broker = dev('trust-broker');
      const meta = { site: 'lab' };
      const result = await store.write([
        { device: signed, metric: 'temperature', ts: T0, value: 1, seq: 1, meta },
        { device: broker, metric: 'temperature', ts: T0, value: 2, meta, trust: 'broker' },
        { device: broker, metric: 'temperature', ts: T0 + 1000, value: 3, meta, trust: 'broker' },
        { device: broker, metric: 'humidity', ts: T0, value: 4, meta, trust: 'broker' },
      ]);
      expect(result.refused).toEqual([]);
      if (store.kind === 'influxdb2') return; // its Flux queries do not read the trust (store/port.ts)
      const signedRaw = await raw(store, signed, ['temperature'], T0, T0 + HOUR);
      expect(signedRaw.series[0]).toMatchObject({ metric: 'temperature', trust: ['signed'] });
      const brokerRaw = await raw(store, broker, undefined, T0, T0 + HOUR);
      expect(brokerRaw.series.map((s) => [s.metric, s.trust, s.points.length])).toEqual([['humidity', ['broker'], 1], ['temperature', ['broker'], 2]]);
      const aggregated = await store.query({ device: broker, metrics: ['temperature'], from: T0, to: T0 + HOUR, mode: 'aggregate', every: HOUR });
      expect(aggregated.series[0]).toMatchObject({ trust: ['broker'], points: [{ ts: T0, value: 2.5 }] });
      // The same identity written again as signed (the device was made signed): one point, signed.
      // InfluxDB keeps a copy per tag set instead (store/SCHEMA.md), as for a metadata change.
      if (store.kind !== 'embedded') return;
      await store.write([{ device: broker, metric: 'temperature', ts: T0 + 1000, value: 5, seq: 9, meta }]);
      const mixed = await raw(store, broker, ['temperature'], T0, T0 + HOUR);
      expect(pointsOf(mixed, 'temperature')).toEqual([{ ts: T0, value: 2 }, { ts: T0 + 1000, value: 5 }]);
      expect(mixed.series[0]!.trust).toEqual(['broker', 'signed']);
      expect(await store.count({ device: broker })).toBe(3);
    });

    it('treats a range as [from, to): from included, to excluded', async () => {
      await store.write([0, 999, 1000, 1999, 2000].map((dt) => ({ device: dev('bounds'), metric: 'level', ts: T0 + dt, value: dt })));
      const answer = await raw(store, dev('bounds'), ['level'], T0 + 999, T0 + 2000);
      expect(pointsOf(answer, 'level').map((p) => p.ts - T0)).toEqual([999, 1000, 1999]);
      expect(await store.count({ device: dev('bounds'), from: T0 + 999, to: T0 + 2000 })).toBe(3);
      // Aggregated windows align to the epoch, but only points inside [from, to) count.
      const windows = await store.query({ device: dev('bounds'), metrics: ['level'], from: T0 + 999, to: T0 + 2000, every: 1000, fn: 'count' });
      expect(windows.series[0]!.points.map((p) => [p.ts - T0, p.value])).toEqual([
        [0, 1],
        [1000, 2],
      ]);
    });

    it('aggregates each window with mean, min, max, last and count, with the min/max envelope', async () => {
      // Two 10 s windows: values 1..5 in the first, 10, 30, 20 in the second (written out of order).
      const first = [1, 2, 3, 4, 5].map((value, i) => ({ device: dev('agg'), metric: 'flow', ts: T0 + i * 2000, value }));
      const second = [
        { device: dev('agg'), metric: 'flow', ts: T0 + 19_000, value: 20 },
        { device: dev('agg'), metric: 'flow', ts: T0 + 10_000, value: 10 },
        { device: dev('agg'), metric: 'flow', ts: T0 + 15_000, value: 30 },
      ];
      await store.write([...second, ...first]);
      const expected = {
        mean: [3, 20],
        min: [1, 10],
        max: [5, 30],
        last: [5, 20],
        count: [5, 3],
      } as const;
      for (const fn of ['mean', 'min', 'max', 'last', 'count'] as const) {
        const answer = await store.query({ device: dev('agg'), metrics: ['flow'], from: T0, to: T0 + 20_000, every: 10_000, fn });
        expect(answer.mode).toBe('aggregate');
        expect(answer.every).toBe(10_000);
        expect(answer.series[0]!.points, fn).toEqual([
          { ts: T0, value: expected[fn][0], min: 1, max: 5 },
          { ts: T0 + 10_000, value: expected[fn][1], min: 10, max: 30 },
        ]);
      }
      // Empty windows are left out, not filled.
      const sparse = await store.query({ device: dev('agg'), metrics: ['flow'], from: T0 - 60_000, to: T0 + 80_000, every: 10_000, fn: 'max' });
      expect(sparse.series[0]!.points.map((p) => p.ts - T0)).toEqual([0, 10_000]);
    });

    it('answers empty ranges, unknown devices and unknown metrics with empty results', async () => {
      await store.write([{ device: dev('empty'), metric: 'rpm', ts: T0, value: 1 }]);
      const named = await raw(store, dev('empty'), ['rpm', 'vibration'], T0 + HOUR, T0 + 2 * HOUR);
      expect(named.series).toEqual([
        { metric: 'rpm', points: [] },
        { metric: 'vibration', points: [] },
      ]);
      const aggregated = await store.query({ device: dev('empty'), metrics: ['rpm'], from: T0 + HOUR, to: T0 + DAY });
      expect(aggregated.series).toEqual([{ metric: 'rpm', points: [] }]);
      expect((await raw(store, dev('nobody'), undefined, T0, T0 + HOUR)).series).toEqual([]);
      expect(await store.latest(dev('nobody'), T0 - DAY)).toEqual([]);
      expect(await store.meta(dev('nobody'))).toBeUndefined();
      expect(await store.count({ device: dev('nobody') })).toBe(0);
    });

    it('returns the latest value per metric of a device', async () => {
      await store.write([
        { device: dev('fresh'), metric: 'temperature', ts: T0 + 5000, value: 21.5 },
        { device: dev('fresh'), metric: 'temperature', ts: T0 + 1000, value: 20 },
        { device: dev('fresh'), metric: 'humidity', ts: T0 + 3000, value: 40 },
        { device: dev('other'), metric: 'temperature', ts: T0 + 9000, value: 99 },
      ]);
      expect(await store.latest(dev('fresh'), T0)).toEqual([
        { metric: 'humidity', ts: T0 + 3000, value: 40 },
        { metric: 'temperature', ts: T0 + 5000, value: 21.5 },
      ]);
      expect(await store.latest(dev('fresh'), T0 + 4000)).toEqual([{ metric: 'temperature', ts: T0 + 5000, value: 21.5 }]);
    });

    it('returns the latest value per device and metric of the whole fleet in one call', async () => {
      const fleet = [dev('fleet-a'), dev('fleet-b')];
      await store.write([
        { device: dev('fleet-a'), metric: 'temperature', ts: T0 + 1000, value: 1, meta: { site: 'one' } },
        { device: dev('fleet-a'), metric: 'temperature', ts: T0 + 2000, value: 2, meta: { site: 'two' } },
        { device: dev('fleet-b'), metric: 'humidity', ts: T0 + 3000, value: 3 },
        { device: dev('fleet-b'), metric: 'temperature', ts: T0 + 500, value: 4 },
      ]);
      const ours = (await store.latestAll(T0)).filter((v) => fleet.includes(v.device));
      expect(ours).toEqual([
        { device: dev('fleet-a'), metric: 'temperature', ts: T0 + 2000, value: 2 },
        { device: dev('fleet-b'), metric: 'humidity', ts: T0 + 3000, value: 3 },
        { device: dev('fleet-b'), metric: 'temperature', ts: T0 + 500, value: 4 },
      ]);
      expect((await store.latestAll(T0 + 2500)).filter((v) => fleet.includes(v.device))).toEqual([{ device: dev('fleet-b'), metric: 'humidity', ts: T0 + 3000, value: 3 }]);
    });

    it('round-trips metadata tag values with spaces, commas, equals signs, quotes, backslashes, newlines and non-ASCII', async () => {
      const hostile: DeviceMeta[] = [
        { site: 'Hall 7, bay=3', model: 'He said "hi"', profile: "it's" },
        { site: 'C:\\data\\', model: 'a\\ b\\,c\\=d', profile: 'line1\nline2\r\ttab' },
        { site: 'Zürich – 東京 🚀', model: '%:not encoded', profile: '  leading and trailing  ' },
        { site: '\\', model: '=', profile: ',' },
      ];
      for (const [i, meta] of hostile.entries()) {
        const result = await store.write([{ device: dev(`tags-${i}`), metric: 'temperature', ts: T0 + i, value: i, meta }]);
        expect(result.refused).toEqual([]);
      }
      for (const [i, meta] of hostile.entries()) {
        expect(await store.meta(dev(`tags-${i}`))).toEqual(meta);
        expect(pointsOf(await raw(store, dev(`tags-${i}`), ['temperature'], T0, T0 + HOUR), 'temperature')).toEqual([{ ts: T0 + i, value: i }]);
      }
    });

    it('refuses bad points alone, by index, and writes the rest of the batch', async () => {
      const batch: StorePoint[] = [
        { device: dev('mixed'), metric: 'temperature', ts: T0, value: 1 },
        { device: dev('mixed'), metric: 'temperature', ts: T0 + 1000, value: Number.NaN },
        { device: dev('mixed'), metric: 'Bad Metric', ts: T0 + 2000, value: 3 },
        { device: dev('mixed'), metric: 'temperature', ts: T0 + 3000.5, value: 4 },
        { device: 'Not A Slug', metric: 'temperature', ts: T0, value: 5 },
        { device: dev('mixed'), metric: 'temperature', ts: T0 + 4000, value: Number.POSITIVE_INFINITY },
        { device: dev('mixed'), metric: 'temperature', ts: T0 + 5000, value: 6 },
      ];
      const result = await store.write(batch);
      expect(result.written).toBe(2);
      expect(result.refused.map((r) => r.index)).toEqual([1, 2, 3, 4, 5]);
      for (const r of result.refused) expect(r.message).toMatch(/\w/);
      expect(pointsOf(await raw(store, dev('mixed'), ['temperature'], T0, T0 + HOUR), 'temperature')).toEqual([
        { ts: T0, value: 1 },
        { ts: T0 + 5000, value: 6 },
      ]);
    });

    it('rejects hostile query parameters with their codes', async () => {
      const base: RangeQuery = { device: dev('agg'), metrics: ['flow'], from: T0, to: T0 + HOUR };
      const cases: [string, RangeQuery, ErrorCode][] = [
        ['from after to', { ...base, from: T0 + HOUR, to: T0 }, 'QUERY_RANGE_INVALID'],
        ['empty range', { ...base, to: T0 }, 'QUERY_RANGE_INVALID'],
        ['unknown function', { ...base, fn: 'median' as never }, 'QUERY_FUNCTION_UNKNOWN'],
        ['window of zero', { ...base, every: 0 }, 'QUERY_RANGE_INVALID'],
        ['negative window', { ...base, every: -1000 }, 'QUERY_RANGE_INVALID'],
        ['ten-year raw range', { ...base, mode: 'raw', from: T0 - 10 * 365 * DAY }, 'QUERY_RANGE_INVALID'],
        ['NaN from', { ...base, from: Number.NaN }, 'QUERY_RANGE_INVALID'],
        ['injection in the device', { ...base, device: "agg' OR 1=1 --" }, 'QUERY_INVALID'],
        ['injection in a metric', { ...base, metrics: ['flow") FROM x; DROP DATABASE sensorpipe; --'] }, 'QUERY_INVALID'],
        ['no metrics', { ...base, metrics: [] }, 'QUERY_INVALID'],
        ['maxPoints of zero', { ...base, maxPoints: 0 }, 'QUERY_INVALID'],
      ];
      for (const [label, query, code] of cases) {
        const err = await store.query(query).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isSensorpipeError(err) ? err.code : err, label).toBe(code);
        expect(isRetryableStoreError(err), label).toBe(false);
      }
    });

    it('keeps its data across a restart', async () => {
      await store.write([{ device: dev('durable'), metric: 'energy', ts: T0 + 42, value: 4.2 }]);
      store = await rig.reopen();
      expect(pointsOf(await raw(store, dev('durable'), ['energy'], T0, T0 + HOUR), 'energy')).toEqual([{ ts: T0 + 42, value: 4.2 }]);
      // Points written before the restart are still rewritten in place, not duplicated.
      await store.write([{ device: dev('durable'), metric: 'energy', ts: T0 + 42, value: 4.3 }]);
      expect(await store.count({ device: dev('durable') })).toBe(1);
    });

    it('raw queries stop at maxPoints per series and say so', async () => {
      const points: StorePoint[] = [];
      for (let i = 0; i < 30; i++) points.push({ device: dev('many'), metric: 'current', ts: T0 + i * 1000, value: i }, { device: dev('many'), metric: 'voltage', ts: T0 + i * 1000, value: i });
      await store.write(points);
      const cut = await raw(store, dev('many'), ['current', 'voltage'], T0, T0 + HOUR, 10);
      expect(cut.truncated).toBe(true);
      expect(pointsOf(cut, 'current').map((p) => p.value)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(pointsOf(cut, 'voltage')).toHaveLength(10);
      expect((await raw(store, dev('many'), ['current'], T0, T0 + HOUR, 30)).truncated).toBe(false);
    });

    it('a cut raw answer is complete up to nextFrom, and asking again from there continues without gap or overlap', async () => {
      const device = dev('cut');
      const points: StorePoint[] = [];
      for (let i = 0; i < 30; i++) points.push({ device, metric: 'current', ts: T0 + i * 1000, value: i });
      // A sparser series that is not cut itself: its points from the cut time on wait for the next answer.
      for (let i = 0; i < 5; i++) points.push({ device, metric: 'offset', ts: T0 + 500 + i * 3000, value: 100 + i });
      await store.write(points);
      const first = await raw(store, device, undefined, T0, T0 + HOUR, 10);
      expect(first.truncated).toBe(true);
      expect(first.nextFrom).toBe(T0 + 10_000);
      expect(pointsOf(first, 'current').map((p) => p.value)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(pointsOf(first, 'offset').map((p) => p.value)).toEqual([100, 101, 102, 103]);
      const second = await raw(store, device, undefined, first.nextFrom!, T0 + HOUR, 100);
      expect(second.truncated).toBe(false);
      expect(second.nextFrom).toBeUndefined();
      expect(pointsOf(second, 'current').map((p) => p.value)).toEqual(Array.from({ length: 20 }, (_, i) => 10 + i));
      expect(pointsOf(second, 'offset').map((p) => p.value)).toEqual([104]);
    });

    it('reads any range raw page by page: every point once, in (ts, metric) order, metrics of one time split across pages', { timeout: 60_000 }, async () => {
      const device = dev('pages');
      const metrics = ['a', 'b', 'c'];
      const expected: RawRow[] = [];
      const batch: StorePoint[] = [];
      // 20,000 times × 3 metrics at the same timestamp, plus times holding one metric only: 60,100 points.
      for (let i = 0; i < 20_000; i++) for (const metric of metrics) batch.push({ device, metric, ts: T0 + i * 100, value: i + metrics.indexOf(metric) / 10 });
      for (let i = 0; i < 100; i++) batch.push({ device, metric: 'b', ts: T0 + i * 100 + 50, value: -i - 1 });
      // Far apart: more than the 7 days a raw query may span, and a point rewritten after a metadata change.
      batch.push({ device, metric: 'a', ts: T0 - 10 * DAY, value: 7, meta: { site: 'old' } });
      for (let i = 0; i < batch.length; i += 5000) expect((await store.write(batch.slice(i, i + 5000))).refused).toEqual([]);
      // (Same value: which copy InfluxDB answers first is not defined, store/SCHEMA.md.)
      await store.write([{ device, metric: 'a', ts: T0 - 10 * DAY, value: 7, meta: { site: 'new' } }]);
      for (const p of batch) expected.push({ ts: p.ts, metric: p.metric, value: p.value });
      expected.sort(byTsThenMetric);

      const limit = 1000; // not a multiple of 3: page boundaries fall between metrics of one time
      const { rows, pages } = await allPages(store, { device, from: T0 - 11 * DAY, to: T0 + DAY, limit });
      expect(rows.length).toBe(expected.length);
      expect(rows).toEqual(expected);
      expect(pages.length).toBeGreaterThan(50);
      for (const size of pages) expect(size).toBeLessThanOrEqual(limit);
      // Named metrics and a narrower range.
      const named = await allPages(store, { device, metrics: ['c', 'a'], from: T0 + 1000, to: T0 + 3000, limit: 7 });
      expect(named.rows).toEqual(expected.filter((r) => r.metric !== 'b' && r.ts >= T0 + 1000 && r.ts < T0 + 3000));
      // Nothing there: one empty page, no next.
      expect(await store.rawPage({ device: dev('nobody'), from: T0, to: T0 + HOUR })).toEqual({ rows: [] });
      // Hostile pages are refused with their codes.
      const base: RawPageQuery = { device, from: T0, to: T0 + HOUR };
      await expectCode(store.rawPage({ ...base, limit: 0 }), 'QUERY_INVALID');
      await expectCode(store.rawPage({ ...base, limit: 50_001 }), 'QUERY_INVALID');
      await expectCode(store.rawPage({ ...base, limit: 1.5 }), 'QUERY_INVALID');
      await expectCode(store.rawPage({ ...base, after: { ts: T0, metric: "a' OR 1=1 --" } }), 'QUERY_INVALID');
      await expectCode(store.rawPage({ ...base, after: { ts: Number.NaN, metric: 'a' } }), 'QUERY_INVALID');
      await expectCode(store.rawPage({ ...base, device: 'Not A Slug' }), 'QUERY_INVALID');
      await expectCode(store.rawPage({ ...base, from: T0 - 21 * 365 * DAY }), 'QUERY_RANGE_INVALID');
      await expectCode(store.rawPage({ ...base, to: T0 }), 'QUERY_RANGE_INVALID');
    });

    it('1,000,000 points, then a 24-hour query returns at most 1,000 points per series with the right min and max', { timeout: 120_000 }, async () => {
      // One device, 12 metrics, one reading a second for 24 h: 1,036,800 points. Deterministic values
      // with one planted spike up and one down per metric, so the envelope has something to keep.
      const metrics = Array.from({ length: 12 }, (_, k) => `m${k}`);
      const seconds = 86_400;
      const value = (k: number, i: number): number => {
        if (i === 10_000 + k * 5_003) return 1000 + k;
        if (i === 70_000 - k * 3_001) return -1000 - k;
        return Math.round(Math.sin(i / 900 + k) * 1000) / 100 + k;
      };
      let batch: StorePoint[] = [];
      let total = 0;
      for (let i = 0; i < seconds; i++) {
        for (let k = 0; k < metrics.length; k++) batch.push({ device: dev('big'), metric: metrics[k]!, ts: T0 + i * 1000, value: value(k, i), meta: { site: 'bench', profile: 'env' } });
        if (batch.length >= 5000) {
          total += (await store.write(batch)).written;
          batch = [];
        }
      }
      if (batch.length > 0) total += (await store.write(batch)).written;
      expect(total).toBe(seconds * metrics.length);

      const asked = ['m0', 'm5', 'm11'];
      const answer = await store.query({ device: dev('big'), metrics: asked, from: T0, to: T0 + DAY });
      expect(answer.every).toBeGreaterThan(0);
      const every = answer.every!;
      for (const metric of asked) {
        const k = Number(metric.slice(1));
        const points = answer.series.find((s) => s.metric === metric)!.points;
        expect(points.length).toBeGreaterThan(0);
        expect(points.length).toBeLessThanOrEqual(1000);
        // Every window's envelope is exactly the min and max of the raw values in it.
        const expected = new Map<number, { min: number; max: number; sum: number; n: number }>();
        for (let i = 0; i < seconds; i++) {
          const ts = T0 + i * 1000;
          const w = Math.floor(ts / every) * every;
          const v = value(k, i);
          const e = expected.get(w);
          if (e === undefined) expected.set(w, { min: v, max: v, sum: v, n: 1 });
          else {
            e.min = Math.min(e.min, v);
            e.max = Math.max(e.max, v);
            e.sum += v;
            e.n += 1;
          }
        }
        expect(points.map((p) => p.ts)).toEqual([...expected.keys()]);
        for (const p of points) {
          const e = expected.get(p.ts)!;
          expect([p.min, p.max]).toEqual([e.min, e.max]);
          expect(p.value).toBeCloseTo(e.sum / e.n, 9);
        }
        expect(Math.max(...points.map((p) => p.max!))).toBe(1000 + k);
        expect(Math.min(...points.map((p) => p.min!))).toBe(-1000 - k);
      }
    });

    it('reports itself healthy', async () => {
      expect((await store.health()).ok).toBe(true);
    });
  });
}
