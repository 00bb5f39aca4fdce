/**
 * The dashboard's pure logic, without a browser: number and time formatting, the unit map against the
 * simulator's profiles, frame checks, the fleet model and filter, chart series, backoff, routes.
 * The browser end-to-end test (dashboard.e2e.test.ts) covers the same code wired to a real pipeline.
 */
import { describe, expect, it } from 'vitest';
import { PROFILE_NAMES, unitsOf } from '../../firmware-sim/signals.ts';
import { applyStatus, applySummary, applyValue, emptyDevice, matchesFilter, NO_FILTER } from '../../display/web/src/fleet-model.ts';
import { formatAgo, formatPercent, formatValue, secondsUntil, unitOf } from '../../display/web/src/format.ts';
import { parseServerFrame } from '../../display/web/src/frames.ts';
import { BACKOFF, backoffDelay } from '../../display/web/src/live.ts';
import { parseRoute } from '../../display/web/src/route.ts';
import { SeriesData } from '../../display/web/src/series.ts';

describe('format', () => {
  it.each([
    [21.34, '21.34'],
    [1013.25, '1013.25'],
    [2.4641, '2.464'],
    [480, '480'],
    [-0.0001, '0'],
    [-3.5, '-3.5'],
    [1234567.891, '1234567.891'],
    [2e12, '2.000e+12'],
    [Number.NaN, '–'],
  ])('formatValue(%s) = %s', (value, text) => expect(formatValue(value)).toBe(text));

  it('shows every value with up to three decimals as the number itself', () => {
    for (const value of [0.001, 12.5, 99.999, 230.4, 1003.92]) expect(Number(formatValue(value))).toBe(value);
  });

  it.each([
    [null, 'never'],
    [10_000, 'just now'],
    [10_500, 'just now'],
    [13_000, 'just now'],
    [7_000, '3 s ago'],
    [10_000 - 59_000, '59 s ago'],
    [10_000 - 5 * 60_000, '5 min ago'],
    [10_000 - 3 * 3_600_000, '3 h ago'],
    [10_000 - 4 * 86_400_000, '4 d ago'],
  ])('formatAgo(%s) at 10 s', (ts, text) => expect(formatAgo(ts, 10_000)).toBe(text));

  it('formats completeness and countdowns', () => {
    expect(formatPercent(0.9987)).toBe('99.8 %');
    expect(formatPercent(1)).toBe('100.0 %');
    expect(formatPercent(null)).toBe('–');
    expect(secondsUntil(2_100, 0)).toBe(3);
    expect(secondsUntil(0, 5_000)).toBe(1);
  });

  it('knows the unit of every metric the simulator sends, and no unit for others', () => {
    // The simulator's units and the dashboard's are read from one table (test/core/units.test.ts).
    const simulated = Object.fromEntries(PROFILE_NAMES.flatMap((profile) => Object.entries(unitsOf(profile))));
    expect(Object.keys(simulated).length).toBeGreaterThan(0);
    for (const [metric, unit] of Object.entries(simulated)) expect(unitOf(metric), metric).toBe(unit);
    expect(Object.values(simulated)).not.toContain('');
    expect(unitOf('rpm')).toBe('');
    expect(unitOf('constructor')).toBe('');
  });
});

describe('server frames', () => {
  it.each([
    ['{"type":"readings","items":[["d-1",1,1700000000000,{"t":1}]]}', 'readings'],
    ['{"type":"readings","items":[["d-1",1,1700000000000,{"t":1}],["plug-1",0,1700000000000,{"t":2},"broker"]]}', 'readings'],
    ['{"type":"status","device":"d-1","state":"online","since":1}', 'status'],
    ['{"type":"history","id":"dev-1","device":"d","from":0,"to":1,"mode":"aggregate","every":60000,"series":[{"metric":"t","points":[[0,1,0,2],[1,2]]}]}', 'history'],
    ['{"type":"history","id":"dev-1","device":"d","from":0,"to":9,"mode":"raw","truncated":true,"nextFrom":5,"series":[{"metric":"t","points":[[4,1]]}]}', 'history'],
    ['{"type":"welcome","v":1,"serverTime":1,"tickMs":20,"limits":{}}', 'welcome'],
    ['{"type":"error","code":"QUERY_INVALID","message":"m","id":"x"}', 'error'],
  ])('accepts %s', (text, type) => expect(parseServerFrame(text)?.type).toBe(type));

  it.each([
    'not json',
    '[]',
    'null',
    '{"type":"constructor"}',
    '{"type":"readings"}',
    '{"type":"readings","items":[["d-1",1,{"t":1}]]}',
    '{"type":"readings","items":[["d-1","1",1,{"t":1}]]}',
    '{"type":"readings","items":[["d-1",1,1,{"t":1},"signed"]]}',
    '{"type":"status","device":"d-1","state":"maybe","since":1}',
    '{"type":"history","id":"x","device":"d","from":0,"to":1,"series":[{"metric":"t","points":[[0,"1"]]}]}',
    '{"type":"history","id":"x","device":"d","from":0,"to":1,"series":[{"metric":"t","points":[[0,1,2]]}]}',
    // A cut mark of the wrong type: the frame is dropped, never drawn as if it were whole.
    '{"type":"history","id":"x","device":"d","from":0,"to":9,"truncated":"yes","nextFrom":5,"series":[]}',
    '{"type":"history","id":"x","device":"d","from":0,"to":9,"truncated":true,"nextFrom":"5","series":[]}',
  ])('drops %s', (text) => expect(parseServerFrame(text)).toBeNull());
});

describe('fleet model', () => {
  const summary = {
    id: 'boiler-7',
    registered: 'active' as const,
    trust: 'signed' as const,
    meta: { site: 'Plant 3', model: 'TH-2', profile: 'env' },
    state: 'online' as const,
    since: 1_000,
    lastSeen: 5_000,
    latest: { temperature: { ts: 5_000, value: 21.5 } },
    completeness: { received: 99, missing: 1, ratio: 0.99 },
    counts: null,
  };

  it('keeps the newer value whichever way it came', () => {
    const device = emptyDevice('boiler-7');
    expect(applyValue(device, 'temperature', 6_000, 22)).toBe(true);
    applySummary(device, summary); // a snapshot taken before the live value
    expect(device.latest.get('temperature')).toEqual({ ts: 6_000, value: 22 });
    expect(device.lastSeen).toBe(6_000);
    expect(applyValue(device, 'temperature', 4_000, 1)).toBe(false);
    expect(device.site).toBe('Plant 3');
  });

  it('does not let an older status undo a newer one', () => {
    const device = emptyDevice('boiler-7');
    applyStatus(device, 'offline', 2_000);
    applySummary(device, summary); // online since 1 000: older
    expect(device.state).toBe('offline');
    applyStatus(device, 'online', 3_000);
    expect(device.state).toBe('online');
  });

  it.each([
    [{}, true],
    [{ text: 'BOILER' }, true],
    [{ text: 'plant 3' }, true],
    [{ text: 'th-2' }, true],
    [{ text: 'pump' }, false],
    [{ status: 'online' }, true],
    [{ status: 'offline' }, false],
    [{ status: 'revoked' }, false],
    [{ site: 'Plant 3' }, true],
    [{ site: 'Plant 4' }, false],
    [{ profile: 'env' }, true],
    [{ profile: 'power', text: 'boiler' }, false],
  ] as const)('filter %j matches: %s', (filter, expected) => {
    const device = emptyDevice('boiler-7');
    applySummary(device, summary);
    expect(matchesFilter(device, { ...NO_FILTER, ...filter })).toBe(expected);
  });
});

describe('chart series', () => {
  it('appends raw readings in time order, one point per timestamp', () => {
    const series = new SeriesData();
    series.replace([[1_000, 1], [2_000, 2]], undefined);
    series.append(3_000, 3);
    series.append(1_500, 1.5); // a device catching up
    series.append(3_000, 3.1); // the same reading again: replaced, not doubled
    expect(series.columns()[0]).toEqual([1_000, 1_500, 2_000, 3_000]);
    expect(series.columns()[1]).toEqual([1, 1.5, 2, 3.1]);
    expect(series.hasBand).toBe(false);
  });

  it('folds live readings into aggregate windows, widening min and max', () => {
    const series = new SeriesData();
    series.replace([[0, 10, 9, 11], [60_000, 10, 8, 12]], 60_000);
    series.append(90_000, 30); // a spike in the last window
    series.append(100_000, 10);
    series.append(185_000, 11); // two windows on: starts at 180 000
    const [xs, values, mins, maxs] = series.columns();
    expect(xs).toEqual([0, 60_000, 180_000]);
    expect(values).toEqual([10, 10, 11]);
    expect(mins).toEqual([9, 8, 11]);
    expect(maxs).toEqual([11, 30, 11]);
  });

  it('starts a window from a raw point of the recent tail, keeping its value in the band', () => {
    const series = new SeriesData();
    // An aggregated history ends with raw points (the server joins history to live on raw readings).
    series.replace([[0, 10, 9, 11], [100_000, 20]], 60_000);
    series.append(101_000, 15);
    expect(series.columns().map((column) => column.at(-1))).toEqual([100_000, 15, 15, 20]);
  });

  it('drops points that slid out of the window, keeping a window that reaches into it', () => {
    const series = new SeriesData();
    series.replace([[0, 1, 1, 1], [60_000, 2, 2, 2], [120_000, 3, 3, 3]], 60_000);
    series.trimBefore(100_000);
    expect(series.columns()[0]).toEqual([60_000, 120_000]);
    series.trimBefore(1_000_000);
    expect(series.length).toBe(0);
  });
});

describe('reconnect backoff', () => {
  it('doubles up to the cap, with jitter between half and all of it', () => {
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, () => 1))).toEqual([500, 1_000, 2_000, 4_000]);
    expect(backoffDelay(0, () => 0)).toBe(250);
    expect(backoffDelay(50, () => 1)).toBe(BACKOFF.maxMs);
    expect(backoffDelay(50, () => 0)).toBe(BACKOFF.maxMs / 2);
  });
});

describe('routes', () => {
  it.each([
    ['', { view: 'fleet' }],
    ['#/', { view: 'fleet' }],
    ['#/device/boiler-7', { view: 'device', id: 'boiler-7' }],
    ['#/device/boiler-7?range=7d', { view: 'device', id: 'boiler-7', range: '7d' }],
    ['#/device/boiler-7?range=2y', { view: 'device', id: 'boiler-7' }],
    ['#/device/Boiler%207', { view: 'fleet' }],
    ['#/device/%E0%A4%A', { view: 'fleet' }],
    ['#/device/..%2F..%2Fapi', { view: 'fleet' }],
  ])('%s', (hash, route) => expect(parseRoute(hash)).toEqual(route));
});
