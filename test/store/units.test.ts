/** Pure store logic, table-driven: query planning, HTTP parameters, line protocol, batch checks. */
import { describe, expect, it } from 'vitest';
import { isSensorpipeError } from '../../core/errors.ts';
import { parseHistoryParams } from '../../core/query.ts';
import { decodeTagValue, encodeTagValue, retryAfterMs, toLines } from '../../store/line-protocol.ts';
import { checkBatch } from '../../store/points.ts';
import type { RangeQuery } from '../../store/port.ts';
import { planQuery, windowCount } from '../../store/query.ts';

const T0 = Date.UTC(2026, 0, 5);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (err) {
    return isSensorpipeError(err) ? err.code : String(err);
  }
}

describe('planQuery', () => {
  it.each([
    ['24 h from midnight', T0, T0 + DAY, 1000],
    ['24 h from an odd ms', T0 + 12_345, T0 + 12_345 + DAY, 1000],
    ['7 days', T0 + 1, T0 + 7 * DAY, 1000],
    ['1 s', T0, T0 + 1000, 1000],
    ['3 ms', T0, T0 + 3, 1000],
    ['19 years, 1 point', Date.UTC(2001, 0, 1), Date.UTC(2020, 0, 1), 1],
    ['1 h at 7 points', T0 + 999, T0 + HOUR + 999, 7],
  ])('chooses a window that keeps %s within maxPoints', (_label, from, to, maxPoints) => {
    const plan = planQuery({ device: 'd', from, to, maxPoints });
    expect(plan.every).toBeGreaterThan(0);
    expect(windowCount(from, to, plan.every)).toBeLessThanOrEqual(maxPoints);
  });

  it('takes an explicit window as given when it fits, and widens one that would exceed maxPoints', () => {
    expect(planQuery({ device: 'd', from: T0, to: T0 + HOUR, every: 60_000 }).every).toBe(60_000);
    const widened = planQuery({ device: 'd', from: T0 + 1, to: T0 + 1 + DAY, every: 1000, maxPoints: 1000 });
    expect(windowCount(T0 + 1, T0 + 1 + DAY, widened.every)).toBeLessThanOrEqual(1000);
  });

  it.each<[string, RangeQuery, string]>([
    ['from after to', { device: 'd', from: T0 + 1, to: T0 }, 'QUERY_RANGE_INVALID'],
    ['fractional from', { device: 'd', from: T0 + 0.5, to: T0 + 1000 }, 'QUERY_RANGE_INVALID'],
    ['window of zero', { device: 'd', from: T0, to: T0 + 1000, every: 0 }, 'QUERY_RANGE_INVALID'],
    ['unknown function', { device: 'd', from: T0, to: T0 + 1000, fn: 'stddev' as never }, 'QUERY_FUNCTION_UNKNOWN'],
    ['ten-year raw range', { device: 'd', from: T0 - 3650 * DAY, to: T0, mode: 'raw' }, 'QUERY_RANGE_INVALID'],
    ['30-year range', { device: 'd', from: T0 - 30 * 365 * DAY, to: T0 }, 'QUERY_RANGE_INVALID'],
    ['bad device', { device: '../etc', from: T0, to: T0 + 1 }, 'QUERY_INVALID'],
    ['33 metrics', { device: 'd', metrics: Array.from({ length: 33 }, (_, i) => `m${i}`), from: T0, to: T0 + 1 }, 'QUERY_INVALID'],
    ['maxPoints too large', { device: 'd', from: T0, to: T0 + 1, maxPoints: 1_000_000 }, 'QUERY_INVALID'],
  ])('rejects %s', (_label, query, code) => {
    expect(codeOf(() => planQuery(query))).toBe(code);
  });
});

describe('parseHistoryParams (the display\'s URL parameters)', () => {
  it('reads numbers, ISO dates and comma-separated metrics into a RangeQuery', () => {
    const params = new URLSearchParams('metrics=temperature,humidity,temperature&from=2026-01-05T00:00:00Z&to=1767657600000&fn=max&every=60000&maxPoints=500');
    expect(parseHistoryParams('boiler-7', params)).toEqual({
      device: 'boiler-7',
      metrics: ['temperature', 'humidity'],
      from: T0,
      to: 1767657600000,
      fn: 'max',
      every: 60000,
      maxPoints: 500,
    });
    expect(parseHistoryParams('boiler-7', new URLSearchParams(`from=${T0}&to=${T0 + 1}&mode=raw`))).toEqual({ device: 'boiler-7', from: T0, to: T0 + 1, mode: 'raw' });
  });

  it.each([
    ['from=yesterday&to=1', 'QUERY_RANGE_INVALID'],
    ['to=1', 'QUERY_RANGE_INVALID'],
    ['from=1&to=2&every=1.5', 'QUERY_RANGE_INVALID'],
    ['from=1&to=2&fn=median', 'QUERY_FUNCTION_UNKNOWN'],
    ['from=1&to=2&metrics=Temp', 'QUERY_INVALID'],
    ['from=1&to=2&mode=fast', 'QUERY_INVALID'],
    ['from=1&to=2&maxPoints=lots', 'QUERY_INVALID'],
    ['from=1&to=2&limit=5', 'QUERY_INVALID'],
    ['from=99999999999999999999&to=2', 'QUERY_RANGE_INVALID'],
  ])('rejects %s with %s', (query, code) => {
    expect(codeOf(() => parseHistoryParams('boiler-7', new URLSearchParams(query)))).toBe(code);
  });
});

describe('line protocol', () => {
  it.each(['plain', 'Hall 7, bay=3', 'He said "hi"', 'C:\\data\\', 'a\\ b', 'line1\nline2', '%:looks encoded', 'Zürich 東京 🚀', '\\'])(
    'encodes %j reversibly, and only when line protocol cannot carry it',
    (value) => {
      const stored = encodeTagValue(value);
      expect(decodeTagValue(stored)).toBe(value);
      expect(stored === value).toBe(!/[\\\n]/.test(value) && !value.startsWith('%:'));
      expect(stored).not.toMatch(/[\n\r]/);
    },
  );

  it('puts the metrics of one reading on one line with sorted, escaped tags and float fields; other points on their own lines', () => {
    const meta = { site: 'Hall 7', model: 'a,b', profile: 'x=y' };
    const lines = toLines(
      [
        { device: 'd1', metric: 'temperature', ts: T0, value: 21.5, meta },
        { device: 'd1', metric: 'humidity', ts: T0, value: 40, meta },
        { device: 'd1', metric: 'temperature', ts: T0 + 1000, value: -0.1, meta },
        { device: 'd1', metric: 'pressure', ts: T0, value: 1e21, meta },
      ],
      [0, 1, 2, 3],
    );
    const tags = 'readings,device=d1,model=a\\,b,profile=x\\=y,site=Hall\\ 7,trust=signed';
    // InfluxDB merges the fields of lines with the same series and time, so `pressure` may have its own.
    expect(lines).toEqual([
      { text: `${tags} temperature=21.5,humidity=40 ${T0}`, indexes: [0, 1] },
      { text: `${tags} temperature=-0.1 ${T0 + 1000}`, indexes: [2] },
      { text: `${tags} pressure=1e+21 ${T0}`, indexes: [3] },
    ]);
  });

  it("carries a reading's seq as the integer field reading-seq, once per line, the last one's when a line holds two readings", () => {
    const lines = toLines(
      [
        { device: 'd1', metric: 'temperature', ts: T0, value: 21.5, seq: 7 },
        { device: 'd1', metric: 'humidity', ts: T0, value: 40, seq: 7 },
        { device: 'd1', metric: 'temperature', ts: T0 + 1000, value: 1, seq: 8 },
        { device: 'd1', metric: 'humidity', ts: T0 + 1000, value: 2, seq: 9 },
        { device: 'd1', metric: 'temperature', ts: T0 + 2000, value: 3 },
      ],
      [0, 1, 2, 3, 4],
    );
    expect(lines.map((l) => l.text)).toEqual([
      `readings,device=d1,trust=signed temperature=21.5,humidity=40,reading-seq=7i ${T0}`,
      `readings,device=d1,trust=signed temperature=1,humidity=2,reading-seq=9i ${T0 + 1000}`,
      `readings,device=d1,trust=signed temperature=3 ${T0 + 2000}`,
    ]);
  });
});

describe('retryAfterMs', () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  it.each([
    ['delay-seconds', '3', 3000],
    ['zero', '0', 0],
    ['an HTTP date ahead', 'Thu, 01 Jan 2026 12:00:30 GMT', 30_000],
    ['an HTTP date past', 'Thu, 01 Jan 2026 11:00:00 GMT', 0],
    ['garbage', 'soon', undefined],
    ['a negative number', '-5', undefined],
    ['absent', null, undefined],
  ] as const)('%s', (_, header, expected) => expect(retryAfterMs(header, now)).toBe(expected));
});

describe('checkBatch', () => {
  it('refuses bad points by index and keeps the last of duplicate identities', () => {
    const { indexes, refused } = checkBatch([
      { device: 'd1', metric: 'a', ts: T0, value: 1 },
      { device: 'd1', metric: 'a', ts: T0, value: 2 },
      { device: 'd1', metric: 'a', ts: T0, value: Number.NaN },
      { device: 'd1', metric: 'b', ts: T0, value: 3 },
      { device: 'd1', metric: 'a', ts: T0, value: 4, meta: { site: '' } },
      { device: 'd1', metric: 'a', ts: T0 + 1, value: 5, meta: { site: '\uD800' } },
      { device: 'd1', metric: 'constructor', ts: T0, value: 6 },
      { device: 'd1', metric: 'a', ts: Date.UTC(2101, 0, 1), value: 7 },
    ]);
    expect(indexes).toEqual([1, 3]);
    expect(refused.map((r) => r.index)).toEqual([2, 4, 5, 6, 7]);
  });
});
