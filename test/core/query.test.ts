/**
 * History requests (core/query.ts): times, the HTTP API's URL parameters, and a /live subscription's
 * `history` (core/live.ts), which go through the same parser and give the same codes.
 */
import { describe, expect, it } from 'vitest';
import { isSensorpipeError } from '../../core/errors.ts';
import { LIVE_LIMITS, parseSubscriptionHistory, type LiveSubscribe } from '../../core/live.ts';
import { historyRequestSchema, parseHistoryParams, parseHistoryRequest, parseTimeParam, queryParamError } from '../../core/query.ts';

const NOW = Date.UTC(2026, 0, 5, 12, 0, 0);
const H = 3_600_000;
const D = 24 * H;

/** The error a call throws, as code and message. */
function refusal(call: () => unknown): { code: string; message: string } | 'no error' {
  try {
    call();
    return 'no error';
  } catch (err) {
    if (!isSensorpipeError(err)) throw err;
    return { code: err.code, message: err.message };
  }
}

describe('parseTimeParam', () => {
  it.each([
    ['1767657600000', 1767657600000],
    ['-5', -5], // digits are always ms since the epoch, even with a sign
    ['2026-01-05T00:00:00Z', Date.UTC(2026, 0, 5)],
    ['2026-01-05', Date.UTC(2026, 0, 5)],
    ['now', NOW],
    ['-15m', NOW - 15 * 60_000],
    ['-1h', NOW - H],
    ['now-1h', NOW - H],
    ['now-7d', NOW - 7 * D],
    ['-1w', NOW - 7 * D],
    ['-1.5h', NOW - 1.5 * H],
    ['-500ms', NOW - 500],
  ])('reads %j', (text, ms) => {
    expect(parseTimeParam(text, NOW)).toBe(ms);
  });

  it.each([
    '', 'yesterday', 'last tuesday', 'now-', '-', 'now-5', '-5.0', 'now+1h', '+1h', 'now - 1h', ' -1h', '-1h ', '-1H', '--1h', 'now--1h',
    '-1e3s', '-\u0661h', 'nowish', 'NOW', '2026-13-45', '-999999999999w',
  ])('refuses %j', (text) => {
    expect(parseTimeParam(text, NOW)).toBeNaN();
  });
});

describe('parseHistoryParams (the HTTP API)', () => {
  const parse = (query: string) => parseHistoryParams('boiler-7', new URLSearchParams(query), NOW);

  it.each([
    ['', { device: 'boiler-7', from: NOW - H, to: NOW }],
    ['from=-4h&to=now', { device: 'boiler-7', from: NOW - 4 * H, to: NOW }],
    ['every=1.5s', { device: 'boiler-7', from: NOW - H, to: NOW, every: 1500 }],
    ['every=1w&from=-30d', { device: 'boiler-7', from: NOW - 30 * D, to: NOW, every: 7 * D }],
    ['every=60000&fn=last&maxPoints=10&mode=aggregate', { device: 'boiler-7', from: NOW - H, to: NOW, every: 60000, fn: 'last', maxPoints: 10, mode: 'aggregate' }],
    ['metrics=a,b,,a', { device: 'boiler-7', metrics: ['a', 'b'], from: NOW - H, to: NOW }],
    ['from=&to=', { device: 'boiler-7', from: NOW - H, to: NOW }], // empty is absent
  ])('reads ?%s', (query, expected) => {
    expect(parse(query)).toEqual(expected);
  });

  it.each([
    ['from=yesterday', 'QUERY_RANGE_INVALID', 'from: must be ms since the epoch, an ISO-8601 date, now, or relative such as -1h'],
    ['to=99999999999999999999', 'QUERY_RANGE_INVALID', 'to: must be ms since the epoch, an ISO-8601 date, now, or relative such as -1h'],
    [`from=${NOW}&to=${NOW - 1}`, 'QUERY_RANGE_INVALID', 'from must be before to'],
    [`from=${NOW + 60_000}`, 'QUERY_RANGE_INVALID', 'from must be before now'],
    ['every=1.5', 'QUERY_RANGE_INVALID', 'every: must be whole ms or a duration such as 30s, 5m or 1h'],
    ['every=-5', 'QUERY_RANGE_INVALID', 'every: must be whole ms or a duration such as 30s, 5m or 1h'],
    ['every=1e3s', 'QUERY_RANGE_INVALID', 'every: must be whole ms or a duration such as 30s, 5m or 1h'],
    ['every=%205m', 'QUERY_RANGE_INVALID', 'every: must be whole ms or a duration such as 30s, 5m or 1h'],
    ['every=999999999w', 'QUERY_RANGE_INVALID', 'every: must be whole ms or a duration such as 30s, 5m or 1h'],
    ['fn=median', 'QUERY_FUNCTION_UNKNOWN', 'fn must be one of mean, min, max, last, count'],
    ['maxPoints=lots', 'QUERY_INVALID', 'maxPoints: must be a whole number'],
    ['maxPoints=1.5', 'QUERY_INVALID', 'maxPoints: must be a whole number'],
    ['mode=fast', 'QUERY_INVALID', undefined],
    ['metrics=Temp', 'QUERY_INVALID', undefined],
    ['limit=5', 'QUERY_INVALID', 'query: Unrecognized key: "limit" (unknown parameter limit)'],
  ])('refuses ?%s with %s', (query, code, message) => {
    const got = refusal(() => parse(query));
    expect(got).toMatchObject(message === undefined ? { code } : { code, message });
  });

  it('names a bad device from the path', () => {
    expect(refusal(() => parseHistoryParams('../etc', new URLSearchParams(''), NOW))).toMatchObject({ code: 'QUERY_INVALID' });
  });
});

describe('queryParamError', () => {
  it('names an unknown parameter itself, with the caller\'s prefix, cut to 64 characters', () => {
    const unknown = (key: string) => {
      const parsed = historyRequestSchema(0).safeParse({ [key]: '1' });
      if (parsed.success) throw new Error('a strict schema took an unknown key');
      return parsed.error;
    };
    expect(queryParamError(unknown('bogus')).details).toEqual({ param: 'bogus' });
    expect(queryParamError(unknown('bogus'), {}, 'history.').details).toEqual({ param: 'history.bogus' });
    expect(queryParamError(unknown('x'.repeat(100))).details).toEqual({ param: 'x'.repeat(64) });
  });
});

describe('parseHistoryRequest with JSON values', () => {
  it('reads numbers as ms, as their digits would be read', () => {
    expect(parseHistoryRequest({ from: NOW - 10, to: NOW, every: 5, maxPoints: 7 }, NOW)).toEqual({ from: NOW - 10, to: NOW, every: 5, maxPoints: 7 });
  });

  it.each([
    [{ every: -5 }, 'QUERY_RANGE_INVALID'],
    [{ every: 1.5 }, 'QUERY_RANGE_INVALID'],
    [{ every: 2 ** 53 }, 'QUERY_RANGE_INVALID'],
    [{ from: 1.5 }, 'QUERY_RANGE_INVALID'],
    [{ to: Number.NaN }, 'QUERY_RANGE_INVALID'],
    [{ maxPoints: 1.5 }, 'QUERY_INVALID'],
    [{ maxPoints: 2 ** 53 }, 'QUERY_INVALID'],
  ])('refuses %j with %s', (fields, code) => {
    expect(refusal(() => parseHistoryRequest(fields, NOW))).toMatchObject({ code });
  });
});

describe('parseSubscriptionHistory (/live)', () => {
  const devices = (n: number) => Array.from({ length: n }, (_, i) => `dev-${i}`);
  const subscribe = (history: LiveSubscribe['history'], list: LiveSubscribe['devices'] = ['dev-0']) => parseSubscriptionHistory({ devices: list, history }, NOW);

  it('reads the range as the HTTP API does, up to now, with the default of 1,000 points', () => {
    expect(subscribe(undefined)).toBeUndefined();
    expect(subscribe({ from: '-1h' })).toEqual({ devices: ['dev-0'], from: NOW - H, fn: undefined, maxPoints: 1000 });
    expect(subscribe({ from: NOW - 5, fn: 'max', maxPoints: 50 }, ['a', 'b', 'a'])).toEqual({ devices: ['a', 'b'], from: NOW - 5, fn: 'max', maxPoints: 50 });
    for (const from of ['-15m', 'now-7d', '-1.5h', '2026-01-05T00:00:00Z', String(NOW - 1), '-5']) {
      expect(subscribe({ from })!.from).toBe(parseHistoryParams('d', new URLSearchParams({ from, to: 'now' }), NOW).from);
    }
  });

  it.each([
    ['history of the whole fleet', { from: '-1h' }, '*', 'QUERY_INVALID', 'history needs a list of devices, not "*"'],
    ['one device more than the limit', { from: '-1h' }, devices(LIVE_LIMITS.maxHistoryDevices + 1), 'LIMIT_EXCEEDED', `history for at most ${LIVE_LIMITS.maxHistoryDevices} devices per subscription`],
    ['an unreadable time', { from: 'last tuesday' }, ['dev-0'], 'QUERY_RANGE_INVALID', 'history.from: must be ms since the epoch, an ISO-8601 date, now, or relative such as -1h'],
    ['a time with no unit', { from: 'now-5' }, ['dev-0'], 'QUERY_RANGE_INVALID', undefined],
    ['now', { from: 'now' }, ['dev-0'], 'QUERY_RANGE_INVALID', 'history.from must be before now'],
    ['the future', { from: NOW + 60_000 }, ['dev-0'], 'QUERY_RANGE_INVALID', 'history.from must be before now'],
    ['a time past safe integers', { from: 2 ** 53 }, ['dev-0'], 'QUERY_RANGE_INVALID', undefined],
  ] as const)('refuses %s', (_what, history, list, code, message) => {
    const got = refusal(() => subscribe(history, list as LiveSubscribe['devices']));
    expect(got).toMatchObject(message === undefined ? { code } : { code, message });
  });

  it('takes exactly the limit, counting each device once', () => {
    expect(subscribe({ from: '-1h' }, devices(LIVE_LIMITS.maxHistoryDevices))!.devices).toHaveLength(LIVE_LIMITS.maxHistoryDevices);
    expect(subscribe({ from: '-1h' }, [...devices(LIVE_LIMITS.maxHistoryDevices), 'dev-0'])!.devices).toHaveLength(LIVE_LIMITS.maxHistoryDevices);
  });
});
