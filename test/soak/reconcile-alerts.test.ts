/**
 * The soak's alerts reconciliation (soak/reconcile-alerts.ts) on hand-made logs and deliveries: each
 * way the promise can break — an event lost, one that is not in the log, one a filter excludes, out of
 * order, delivered twice with no restart between, a second firing without a resolve, a resolve without a
 * firing, the healthy receiver held up, an outage with no event in it — is a failure; a duplicate across
 * an alerts restart, and a delay spanning one, are not.
 */
import { describe, expect, it } from 'vitest';
import type { AlertEvent } from '../../core/alerts.ts';
import { ISOLATION_LIMIT_MS } from '../../soak/alerts.ts';
import { planChaos } from '../../soak/chaos.ts';
import { alertsFailures, checkAlertLog, reconcileAlerts, type AlertsInput, type Delivery } from '../../soak/reconcile-alerts.ts';

const T0 = 1_800_000_000_000;

function event(id: string, rule: string, state: AlertEvent['state'], at: number, severity: AlertEvent['severity'] = 'warning', device = 'd1'): AlertEvent {
  return { v: 1, id, device, rule, kind: 'above', severity, state, metric: 't', value: 1, threshold: 0, at, message: '' } as AlertEvent;
}

// r1 (warning) fires and resolves; r2 (info) too. The flapping receiver does not want info.
const e1 = event('e1', 'r1', 'firing', T0);
const e2 = event('e2', 'r2', 'firing', T0 + 100, 'info');
const e3 = event('e3', 'r1', 'resolved', T0 + 1_000);
const e4 = event('e4', 'r2', 'resolved', T0 + 1_200, 'info');
const log = [e1, e2, e3, e4];
const at = (id: string, ms: number): Delivery => ({ id, at: T0 + ms });

/** The flapping receiver is down from T0 - 500 to T0 + 20 s; it gets its events once back. */
function input(overrides: { log?: AlertEvent[]; healthy?: Delivery[]; flapping?: Delivery[]; starts?: number[]; outages?: AlertsInput['outages']; invalid?: number } = {}): AlertsInput {
  return {
    log: overrides.log ?? log,
    receivers: [
      { name: 'healthy', deliveries: overrides.healthy ?? [at('e1', 5), at('e2', 105), at('e3', 1_005), at('e4', 1_205)], invalid: overrides.invalid ?? 0 },
      { name: 'flapping', severities: ['warning', 'critical'], deliveries: overrides.flapping ?? [at('e1', 20_100), at('e3', 20_200)], invalid: 0 },
    ],
    alertsStarts: overrides.starts ?? [T0 - 10_000],
    healthy: 'healthy',
    flapping: 'flapping',
    outages: overrides.outages ?? [{ from: T0 - 500, to: T0 + 20_000 }],
    isolationLimitMs: ISOLATION_LIMIT_MS,
  };
}

const failures = (i: AlertsInput, minEvents = 4) => alertsFailures(reconcileAlerts(i), minEvents);

describe('reconcileAlerts', () => {
  it('passes the clean case and says what it measured', () => {
    const result = reconcileAlerts(input());
    expect(failures(input())).toEqual([]);
    expect(result).toMatchObject({ events: 4, firing: 2, resolved: 2, byRule: { r1: 2, r2: 2 }, doubleFirings: 0, resolvesWithoutFiring: 0 });
    expect(result.receivers).toEqual([
      expect.objectContaining({ name: 'healthy', wanted: 4, delivered: 4, lost: 0, delayMs: { p50: 5, p99: 5, max: 5, measured: 4 } }),
      expect.objectContaining({ name: 'flapping', wanted: 2, delivered: 2, lost: 0, delayMs: expect.objectContaining({ max: 20_100 }) }),
    ]);
    expect(result.isolation).toEqual({ limitMs: ISOLATION_LIMIT_MS, healthyMaxDelayMs: 5, flappingMaxDelayMs: 20_100, longestOutageMs: 20_500, eventsDuringOutages: 2, held: true });
  });

  const failing: [string, AlertsInput, RegExp][] = [
    ['a logged event the healthy receiver never got', input({ healthy: [at('e1', 5), at('e2', 105), at('e4', 1_205)] }), /1 logged events never reached healthy/],
    ['a logged event the flapping receiver wants and never got', input({ flapping: [at('e1', 20_100)] }), /1 logged events never reached flapping/],
    ['an event that is not in the log', input({ flapping: [at('e1', 20_100), at('zz', 20_150), at('e3', 20_200)] }), /flapping got 1 events that are not in the alert log/],
    ['an event the filters do not want', input({ flapping: [at('e1', 20_100), at('e2', 20_150), at('e3', 20_200)] }), /flapping got 1 events its filters do not want/],
    ['first deliveries out of log order', input({ healthy: [at('e1', 5), at('e3', 1_005), at('e2', 1_100), at('e4', 1_205)] }), /1 events reached healthy out of log order/],
    ['a duplicate with no alerts restart between', input({ healthy: [at('e1', 5), at('e1', 50), at('e2', 105), at('e3', 1_005), at('e4', 1_205)] }), /reached healthy twice with no alerts restart/],
    ['a second firing without a resolve (a restart that forgot)', input({ log: [e1, e2, event('e5', 'r1', 'firing', T0 + 500), e3, e4], healthy: [at('e1', 5), at('e2', 105), at('e5', 505), at('e3', 1_005), at('e4', 1_205)], flapping: [at('e1', 20_100), at('e5', 20_150), at('e3', 20_200)] }), /1 times a \(rule, device\) fired again/],
    ['a resolve without a firing', input({ log: [event('e0', 'r1', 'resolved', T0 - 100), ...log], healthy: [at('e0', -90), at('e1', 5), at('e2', 105), at('e3', 1_005), at('e4', 1_205)], flapping: [at('e0', 20_050), at('e1', 20_100), at('e3', 20_200)] }), /1 resolves of a \(rule, device\) that was not firing/],
    ['the healthy receiver held up while the flapping one was down (one shared queue)', input({ healthy: [at('e1', 20_050), at('e2', 20_060), at('e3', 20_150), at('e4', 20_160)] }), /healthy receiver waited up to 20050 ms/],
    ['no event while the flapping receiver was down: isolation not measured', input({ outages: [{ from: T0 + 30_000, to: T0 + 40_000 }] }), /isolation not measured/],
    ['a body that is not a signed alert event', input({ invalid: 1 }), /healthy got 1 bodies that are not signed/],
  ];
  for (const [name, given, expected] of failing) {
    it(`fails on ${name}`, () => expect(failures(given)).toEqual([expect.stringMatching(expected)]));
  }

  it('fails when the rules proved too little', () => {
    expect(failures(input(), 5)).toEqual([expect.stringContaining('only 4 events logged')]);
  });

  it('allows a duplicate across an alerts restart, and counts it', () => {
    const given = input({ starts: [T0 - 10_000, T0 + 30], healthy: [at('e1', 5), at('e1', 40), at('e2', 105), at('e3', 1_005), at('e4', 1_205)] });
    expect(failures(given)).toEqual([]);
    expect(reconcileAlerts(given).receivers[0]).toMatchObject({ duplicates: 1, duplicatesAcrossKill: 1, duplicatesUnexplained: 0 });
  });

  it('leaves a delay spanning an alerts restart out of the isolation check (the process was dead, not blocked)', () => {
    const given = input({ starts: [T0 - 10_000, T0 + 2_000], healthy: [at('e1', 5), at('e2', 105), at('e3', 9_000), at('e4', 9_005)] });
    expect(failures(given)).toEqual([]);
    expect(reconcileAlerts(given).receivers[0]!.delayMs).toMatchObject({ max: 5, measured: 2 });
  });

  it('judges every (rule, device) pair on its own', () => {
    const other = [event('a', 'r1', 'firing', T0), event('b', 'r1', 'firing', T0 + 1, 'warning', 'd2'), event('c', 'r1', 'resolved', T0 + 2), event('d', 'r1', 'resolved', T0 + 3, 'warning', 'd2')];
    expect(checkAlertLog(other)).toMatchObject({ doubleFirings: 0, resolvesWithoutFiring: 0 });
    expect(checkAlertLog([...other, other[2]!])).toMatchObject({ doubleFirings: 0, resolvesWithoutFiring: 1 });
  });
});

describe('the alerts strikes in the chaos plan', () => {
  const window = { fromMs: 20_000, toMs: 110_000, viewers: 4 };
  it('kills alerts and takes the flapping receiver down in every 2-minute plan, each outage at least twice the isolation limit', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const plan = planChaos(seed, window);
      expect(plan.some((e) => e.kind === 'alerts-kill' && e.durationMs >= 1_000 && e.durationMs <= 3_000)).toBe(true);
      const outages = plan.filter((e) => e.kind === 'webhook-down');
      expect(outages.length).toBeGreaterThan(0);
      for (const o of outages) expect(o.durationMs).toBeGreaterThanOrEqual(2 * ISOLATION_LIMIT_MS);
    }
  });
});
