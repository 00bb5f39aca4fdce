/**
 * Alerts on the display, the pure parts: the display's board of alert states (display/alerts.ts) with
 * hostile and invalid messages ignored and counted by reason, its lists and summaries; the /api/alerts
 * parameters; and the dashboard's model (display/web/src/alerts-model.ts): worst severity per device,
 * threshold lines, and firing spans rebuilt from recent events.
 */
import { describe, expect, it } from 'vitest';
import { parseAlertsQuery, worstSeverity, type ActiveAlert } from '../../core/api.ts';
import { isSensorpipeError } from '../../core/errors.ts';
import { createLogger } from '../../core/logger.ts';
import { AlertBoard, MAX_ALERT_STATE_BYTES } from '../../display/alerts.ts';
import { createDisplayMetrics } from '../../display/metrics.ts';
import { comparatorOf, describeValue, firingSpans, thresholdLines, worstByDevice } from '../../display/web/src/alerts-model.ts';
import { ALERT_T0, event, rule, stateMessage } from './alerts-helpers.ts';

const T = ALERT_T0;

const bytes = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));

function board(registered = ['dev-0', 'dev-1', 'dev-2']) {
  const metrics = createDisplayMetrics();
  const devices = new Set(registered);
  const alerts = new AlertBoard({ isRegistered: (d) => devices.has(d), metrics, logger: createLogger({ level: 'silent' }) });
  const invalid = async (reason: string) => (await metrics.alertStatesInvalid.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  return { alerts, devices, invalid, metrics };
}

describe('AlertBoard: receiving alert states', () => {
  it('keeps a valid message, and an empty payload clears the device', () => {
    const { alerts } = board();
    expect(alerts.receive('dev-0', bytes(stateMessage('dev-0', [rule({ state: 'firing', severity: 'critical' })])))).toBe('set');
    expect(alerts.summaryOf('dev-0')).toEqual({ firing: 1, pending: 0, worst: 'critical' });
    expect(alerts.list().active.map((a) => a.device)).toEqual(['dev-0']);
    expect(alerts.receive('dev-0', Buffer.alloc(0))).toBe('cleared');
    expect(alerts.summaryOf('dev-0')).toBeUndefined();
    expect(alerts.list().active).toEqual([]);
  });

  const valid = stateMessage('dev-0', [rule()]);
  it.each([
    ['not JSON', 'dev-0', bytes('{"v":1,'), 'PAYLOAD_INVALID'],
    ['not UTF-8', 'dev-0', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 'PAYLOAD_INVALID'],
    ['JSON of another shape', 'dev-0', bytes({ hello: 'world' }), 'PAYLOAD_INVALID'],
    ['an unknown member', 'dev-0', bytes({ ...valid, extra: 1 }), 'PAYLOAD_INVALID'],
    ['an unknown state', 'dev-0', bytes({ ...valid, rules: [{ ...rule(), state: 'burning' }] }), 'PAYLOAD_INVALID'],
    ['an unknown severity', 'dev-0', bytes({ ...valid, rules: [{ ...rule(), severity: 'apocalyptic' }] }), 'PAYLOAD_INVALID'],
    ['a rule id with markup', 'dev-0', bytes({ ...valid, rules: [{ ...rule(), rule: '<img src=x onerror=alert(1)>' }] }), 'PAYLOAD_INVALID'],
    ['too many events', 'dev-0', bytes({ ...valid, recent: Array.from({ length: 21 }, (_, i) => event({ at: T + i, state: 'firing' })) }), 'PAYLOAD_INVALID'],
    ['a key given twice', 'dev-0', bytes(JSON.stringify(valid).replace('"v":1', '"v":1,"v":1')), 'PAYLOAD_INVALID'],
    ['a __proto__ member', 'dev-0', bytes(JSON.stringify(valid).replace('"v":1', '"__proto__":{"polluted":1},"v":1')), 'PAYLOAD_INVALID'],
    ['a huge payload', 'dev-0', Buffer.alloc(MAX_ALERT_STATE_BYTES + 1, 0x20), 'PAYLOAD_TOO_LARGE'],
    ["another device's state", 'dev-0', bytes(stateMessage('dev-1', [rule()])), 'TOPIC_DEVICE_MISMATCH'],
    ["another device's event", 'dev-0', bytes(stateMessage('dev-0', [rule()], [event({ at: T, state: 'firing', device: 'dev-1' })])), 'TOPIC_DEVICE_MISMATCH'],
    ['an unregistered device', 'ghost', bytes(stateMessage('ghost', [rule({ state: 'firing' })])), 'DEVICE_UNKNOWN'],
  ])('ignores %s, counted as %s, and keeps what it had', async (_name, device, payload, reason) => {
    const { alerts, invalid } = board();
    alerts.receive('dev-0', bytes(stateMessage('dev-0', [rule({ state: 'firing' })])));
    const before = alerts.list();
    expect(alerts.receive(device, payload)).toBe(reason);
    expect(await invalid(reason)).toBe(1);
    expect(alerts.list()).toEqual(before);
    expect(alerts.size).toBe(1);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('a message older than the one it has is stale, not applied (a retained copy crossing a fresh one)', () => {
    const { alerts } = board();
    alerts.receive('dev-0', bytes(stateMessage('dev-0', [rule({ state: 'firing' })], [], T + 10)));
    expect(alerts.receive('dev-0', bytes(stateMessage('dev-0', [rule({ state: 'ok' })], [], T + 5)))).toBe('stale');
    expect(alerts.summaryOf('dev-0')?.firing).toBe(1);
    expect(alerts.receive('dev-0', bytes(stateMessage('dev-0', [rule({ state: 'ok' })], [], T + 11)))).toBe('set');
    expect(alerts.summaryOf('dev-0')).toEqual({ firing: 0, pending: 0, worst: null });
  });

  it('drops the states of devices that leave the registry', () => {
    const { alerts, devices } = board();
    alerts.receive('dev-1', bytes(stateMessage('dev-1', [rule({ state: 'firing' })])));
    devices.delete('dev-1');
    expect(alerts.registryChanged()).toBe(false);
    expect(alerts.size).toBe(0);
    expect(alerts.list().firing).toBe(0);
  });

  it('asks for the states again once a device it refused as unknown is registered', async () => {
    const { alerts, devices, invalid } = board();
    expect(alerts.receive('late-1', bytes(stateMessage('late-1', [rule({ state: 'firing' })])))).toBe('DEVICE_UNKNOWN');
    expect(alerts.registryChanged()).toBe(false);
    devices.add('late-1');
    expect(alerts.registryChanged()).toBe(true);
    expect(alerts.registryChanged()).toBe(false); // once
    // An empty payload (a deleted retained state) of an unknown device is no error.
    expect(alerts.receive('gone-1', Buffer.alloc(0))).toBe('cleared');
    expect(await invalid('DEVICE_UNKNOWN')).toBe(1);
  });
});

describe('AlertBoard: lists', () => {
  function fleet() {
    const b = board();
    b.alerts.receive('dev-0', bytes(stateMessage('dev-0', [
      rule({ rule: 'hot', state: 'firing', severity: 'warning', since: T + 100 }),
      rule({ rule: 'cold', kind: 'below', threshold: 5, state: 'ok', since: T }),
      rule({ rule: 'quiet', kind: 'silent', metric: undefined, state: 'pending', severity: 'info', since: T + 300 }),
    ], [event({ at: T + 100, state: 'firing' }), event({ at: T + 50, state: 'resolved' }), event({ at: T + 10, state: 'firing' })])));
    b.alerts.receive('dev-1', bytes(stateMessage('dev-1', [rule({ rule: 'hot', state: 'firing', severity: 'critical', since: T + 200 })], [event({ device: 'dev-1', at: T + 200, state: 'firing', severity: 'critical' })])));
    return b;
  }

  it('lists active rules newest first, with counts, and events merged newest first', () => {
    const { alerts } = fleet();
    const list = alerts.list();
    expect(list.active.map((a) => `${a.device}/${a.rule}/${a.state}`)).toEqual(['dev-0/quiet/pending', 'dev-1/hot/firing', 'dev-0/hot/firing']);
    expect([list.firing, list.pending]).toEqual([2, 1]);
    expect(list.recent.map((e) => `${e.device}@${e.at - T}`)).toEqual(['dev-1@200', 'dev-0@100', 'dev-0@50', 'dev-0@10']);
    expect(list.rules).toBeUndefined();
  });

  it('limits both lists, but counts everything', () => {
    const { alerts } = fleet();
    const list = alerts.list({ limit: 1 });
    expect(list.active).toHaveLength(1);
    expect(list.recent.map((e) => e.at - T)).toEqual([200]);
    expect([list.firing, list.pending]).toEqual([2, 1]);
  });

  it("answers one device's alerts with all its rules", () => {
    const { alerts } = fleet();
    const list = alerts.list({ device: 'dev-0' });
    expect(list.active.map((a) => a.rule)).toEqual(['quiet', 'hot']);
    expect(list.rules?.map((r) => r.rule)).toEqual(['hot', 'cold', 'quiet']);
    expect(list.recent.every((e) => e.device === 'dev-0')).toBe(true);
    expect(alerts.list({ device: 'dev-2' })).toEqual({ active: [], firing: 0, pending: 0, recent: [], rules: [] });
  });

  it('summarises each device with its worst firing severity (pending ones do not count as worst)', () => {
    const { alerts } = fleet();
    expect(alerts.summaryOf('dev-0')).toEqual({ firing: 1, pending: 1, worst: 'warning' });
    expect(alerts.summaryOf('dev-1')).toEqual({ firing: 1, pending: 0, worst: 'critical' });
    expect(alerts.summaryOf('dev-2')).toBeUndefined();
  });
});

describe('GET /api/alerts parameters', () => {
  it('reads device and limit', () => {
    expect(parseAlertsQuery(new URLSearchParams('device=dev-0&limit=7'))).toEqual({ device: 'dev-0', limit: 7 });
    expect(parseAlertsQuery(new URLSearchParams(''))).toEqual({});
  });
  it.each(['limit=0', 'limit=501', 'limit=-1', 'limit=1.5', 'limit=1e3', 'limit=abc', 'limit=1&limit=2', 'device=Not_A_Device', 'colour=red', '__proto__=1'])('refuses ?%s with QUERY_INVALID', (query) => {
    let error: unknown;
    try {
      parseAlertsQuery(new URLSearchParams(query));
    } catch (err) {
      error = err;
    }
    expect(isSensorpipeError(error, 'QUERY_INVALID')).toBe(true);
  });
});

describe('worst severity', () => {
  it.each([
    [[], null],
    [['info'], 'info'],
    [['info', 'warning'], 'warning'],
    [['critical', 'info', 'warning'], 'critical'],
    [['warning', 'warning'], 'warning'],
  ] as const)('worstSeverity(%j) = %s', (severities, worst) => expect(worstSeverity(severities)).toBe(worst));

  it('per device, from firing alerts only', () => {
    const active = (device: string, severity: ActiveAlert['severity'], state: ActiveAlert['state']): ActiveAlert => ({ ...rule({ severity }), device, state });
    const worst = worstByDevice([active('a', 'info', 'firing'), active('a', 'critical', 'firing'), active('a', 'warning', 'firing'), active('b', 'critical', 'pending'), active('c', 'warning', 'firing')]);
    expect(Object.fromEntries(worst)).toEqual({ a: 'critical', c: 'warning' });
  });
});

describe('chart overlays', () => {
  it('draws a threshold line per above/below rule on the metric, not for other kinds or metrics', () => {
    const rules = [rule({ rule: 'hot' }), rule({ rule: 'cold', kind: 'below', threshold: 5, severity: 'critical' }), rule({ rule: 'fast', kind: 'rate', threshold: 2 }), rule({ rule: 'wet', metric: 'humidity', threshold: 90 }), rule({ rule: 'quiet', kind: 'silent', metric: undefined })];
    expect(thresholdLines(rules, 'temperature')).toEqual([
      { rule: 'hot', severity: 'warning', kind: 'above', value: 30 },
      { rule: 'cold', severity: 'critical', kind: 'below', value: 5 },
    ]);
    expect(thresholdLines(rules, 'humidity').map((l) => l.value)).toEqual([90]);
    expect(thresholdLines(rules, 'pressure')).toEqual([]);
  });

  it('pairs firing and resolved events into spans, whatever order they come in', () => {
    const events = [event({ at: T + 300, state: 'resolved' }), event({ at: T + 100, state: 'resolved' }), event({ at: T + 200, state: 'firing' }), event({ at: T + 10, state: 'firing' })];
    expect(firingSpans(events, [rule({ state: 'ok', since: T + 300 })], 'temperature').map((s) => [s.from - T, (s.to ?? 0) - T])).toEqual([[10, 100], [200, 300]]);
  });

  it('a rule still firing is open to now; a resolved one whose firing fell out of the list starts before the chart', () => {
    const events = [event({ at: T + 400, state: 'firing' }), event({ at: T + 50, state: 'resolved' })];
    const spans = firingSpans(events, [rule({ state: 'firing', since: T + 400 })], 'temperature');
    expect(spans).toEqual([
      { rule: 'hot', severity: 'warning', from: Number.NEGATIVE_INFINITY, to: T + 50 },
      { rule: 'hot', severity: 'warning', from: T + 400, to: null },
    ]);
  });

  it('a rule firing with no event kept is open from its since; a repeated firing keeps the first start', () => {
    expect(firingSpans([], [rule({ state: 'firing', since: T + 7 })], 'temperature')).toEqual([{ rule: 'hot', severity: 'warning', from: T + 7, to: null }]);
    const repeated = [event({ at: T + 10, state: 'firing' }), event({ at: T + 20, state: 'firing' }), event({ at: T + 30, state: 'resolved' })];
    expect(firingSpans(repeated, [rule({ state: 'ok', since: T + 30 })], 'temperature').map((s) => [s.from - T, (s.to ?? 0) - T])).toEqual([[10, 30]]);
  });

  it('an open span the state says is over ends when the state began', () => {
    const spans = firingSpans([event({ at: T + 10, state: 'firing' })], [rule({ state: 'ok', since: T + 90 })], 'temperature');
    expect(spans.map((s) => [s.from - T, (s.to ?? 0) - T])).toEqual([[10, 90]]);
  });

  it("keeps each metric's spans on its own chart, and device-wide rules' spans on every chart", () => {
    const events = [
      event({ at: T + 10, state: 'firing' }),
      event({ at: T + 20, state: 'firing', rule: 'wet', metric: 'humidity' }),
      event({ at: T + 30, state: 'firing', rule: 'quiet', kind: 'silent', metric: undefined }),
    ];
    const rules = [rule({ state: 'firing' }), rule({ rule: 'wet', metric: 'humidity', state: 'firing' }), rule({ rule: 'quiet', kind: 'silent', metric: undefined, state: 'firing' })];
    expect(firingSpans(events, rules, 'temperature').map((s) => s.rule)).toEqual(['hot', 'quiet']);
    expect(firingSpans(events, rules, 'humidity').map((s) => s.rule)).toEqual(['wet', 'quiet']);
  });

  it('describes value against threshold with the direction the rule fires in', () => {
    expect(comparatorOf('above')).toBe('>');
    expect(comparatorOf('below')).toBe('<');
    expect(comparatorOf('completeness')).toBe('<');
    expect(describeValue({ kind: 'above', metric: 'temperature', value: 31.25, threshold: 30 })).toBe('temperature 31.25 > 30');
    expect(describeValue({ kind: 'silent', value: null, threshold: 60 })).toBe('silent – > 60');
    expect(describeValue({ kind: 'below', metric: 'battery', value: 3.4, threshold: 3.3, state: 'resolved' })).toBe('battery 3.4 (threshold 3.3)');
    expect(describeValue({ kind: 'below', metric: 'battery', value: 3.1, threshold: 3.3, state: 'firing' })).toBe('battery 3.1 < 3.3');
  });
});
