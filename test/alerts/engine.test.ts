/**
 * The evaluator on its own (no I/O): which rules apply to which device, rate, completeness and rejection
 * rules from the pipeline's messages, silence from the clock, rules that stop applying.
 */
import { describe, expect, it } from 'vitest';
import { AlertEngine, type EngineChange } from '../../alerts/engine.ts';
import { parseRulesText } from '../../alerts/rules-file.ts';
import { resolveRule } from '../../core/alert-rules.ts';
import { Registry } from '../../core/registry.ts';
import type { DeviceMeta } from '../../core/schemas.ts';

const T0 = 1_800_000_000_000;

function setup(rulesYaml: string, devices: Record<string, DeviceMeta>) {
  const changes: EngineChange[] = [];
  const problems: string[] = [];
  const engine = new AlertEngine({ maxLagMs: 60_000, onChange: (c) => changes.push(c), onDeviceState: () => undefined, onMetaProblem: (_d, p) => problems.push(p) });
  const registry = new Registry();
  for (const [id, meta] of Object.entries(devices)) registry.add(id, { meta });
  engine.setFileRules(parseRulesText(rulesYaml).rules.map(resolveRule), T0);
  engine.setDevices(registry.list(), T0);
  const summary = () => changes.map((c) => `${c.device}/${c.rule.id}:${c.change}`);
  return { engine, changes, problems, registry, summary };
}

const readings = (device: string, list: [number, Record<string, number>][]) => ({
  v: 1 as const,
  device,
  readings: list.map(([ts, values], i) => ({ seq: i + 1, ts, values })),
  meta: {},
  verifiedAt: T0,
});

describe('alert engine', () => {
  it('selectors: by device, site and profile; metadata rules for their device alone', () => {
    const { engine } = setup(
      `rules:
  - { id: a, kind: silent, after: 1m, selector: { device: d1 } }
  - { id: b, kind: silent, after: 1m, selector: { site: lab } }
  - { id: c, kind: silent, after: 1m, selector: { profile: env } }
  - { id: d, kind: silent, after: 1m }`,
      { d1: { site: 'lab' }, d2: { profile: 'env', alerts: 'co2 > 900' }, d3: {} },
    );
    expect(engine.statesOf('d1').map((s) => s.rule)).toEqual(['a', 'b', 'd']);
    expect(engine.statesOf('d2').map((s) => s.rule)).toEqual(['c', 'd', 'meta-co2-above']);
    expect(engine.statesOf('d3').map((s) => s.rule)).toEqual(['d']);
  });

  it('rate: fires on the change per minute over the window, either way', () => {
    const { engine, summary } = setup('rules: [{ id: r, kind: rate, metric: t, threshold: 5, hysteresis: 2, per: m, window: 1m }]', { d1: {} });
    engine.onReadings(readings('d1', [[T0, { t: 20 }], [T0 + 30_000, { t: 21 }]]), T0 + 30_000); // 2/min
    expect(summary()).toEqual([]);
    engine.onReadings(readings('d1', [[T0 + 40_000, { t: 30 }]]), T0 + 40_000); // 15/min
    expect(summary()).toEqual(['d1/r:firing']);
    engine.onReadings(readings('d1', [[T0 + 100_000, { t: 31 }]]), T0 + 100_000); // window 40..100 s: 1/min
    expect(summary()).toEqual(['d1/r:firing', 'd1/r:resolved']);
  });

  it('completeness: the share of readings that arrived within the window, from cumulative counts', () => {
    const { engine, summary } = setup('rules: [{ id: c, kind: completeness, threshold: 90, clear: 95, window: 1m }]', { d1: {} });
    const at = (ms: number, received: number, missing: number) => engine.onCompleteness({ v: 1, device: 'd1', received, missing, ratio: 0, at: ms }, ms);
    at(T0, 1000, 500); // the baseline: whatever happened before is not this window's
    at(T0 + 10_000, 1010, 500);
    expect(summary()).toEqual([]);
    at(T0 + 20_000, 1015, 505); // 15 of 20 within the window: 75 %
    expect(summary()).toEqual(['d1/c:firing']);
    engine.tick(T0 + 200_000); // the window slides past: nothing expected within it, no judgement
    at(T0 + 210_000, 1115, 505); // new baseline at 20 s… window 150..210 s: 100 of 100
    expect(summary()).toEqual(['d1/c:firing', 'd1/c:resolved']);
  });

  it('rejections: increase of the chosen reasons over the window; a counter reset is not a drop', () => {
    const { engine, summary } = setup('rules: [{ id: x, kind: rejections, reasons: [READING_BAD_SIGNATURE], threshold: 2, window: 1m }]', { d1: {} });
    const counts = (ms: number, bad: number, other: number) =>
      engine.onCounts({ v: 1, device: 'd1', accepted: 0, duplicates: 0, rejected: { READING_BAD_SIGNATURE: bad, PAYLOAD_INVALID: other }, since: T0, at: ms }, ms);
    counts(T0, 50, 0); // retained at start: the baseline
    counts(T0 + 1000, 52, 100); // +2 bad: not more than 2; other reasons do not count
    expect(summary()).toEqual([]);
    counts(T0 + 2000, 1, 100); // ingest restarted: 1 more
    expect(summary()).toEqual(['d1/x:firing']);
    engine.tick(T0 + 120_000); // window slid: no increase within it
    expect(summary()).toEqual(['d1/x:firing', 'd1/x:resolved']);
  });

  it('silent: from the clock; an offline status alone does not fire; a reading resolves it', () => {
    const { engine, summary } = setup('rules: [{ id: q, kind: silent, after: 10s }]', { d1: {} });
    engine.onStatus({ v: 1, device: 'd1', state: 'offline', since: T0 });
    engine.tick(T0 + 5_000);
    expect(summary()).toEqual([]);
    engine.tick(T0 + 10_500);
    expect(summary()).toEqual(['d1/q:firing']);
    engine.tick(T0 + 60_000);
    expect(summary()).toEqual(['d1/q:firing']);
    engine.onReadings(readings('d1', [[T0 + 60_000, { t: 1 }]]), T0 + 60_000);
    expect(summary()).toEqual(['d1/q:firing', 'd1/q:resolved']);
  });

  it('a firing rule that stops applying (rule removed, device revoked) is resolved, not left dangling', () => {
    const { engine, changes, registry, summary } = setup('rules: [{ id: hot, kind: above, metric: t, threshold: 30 }]', { d1: {}, d2: {} });
    engine.onReadings(readings('d1', [[T0, { t: 31 }]]), T0);
    engine.onReadings(readings('d2', [[T0, { t: 31 }]]), T0);
    registry.revoke('d2');
    engine.setDevices(registry.list(), T0 + 1);
    expect(summary()).toEqual(['d1/hot:firing', 'd2/hot:firing', 'd2/hot:resolved']);
    engine.setFileRules([], T0 + 2);
    expect(summary().at(-1)).toBe('d1/hot:resolved');
    expect(changes.at(-1)?.note).toContain('no longer applies');
  });

  it('a reloaded rule with a new threshold keeps its state; a bad metadata clause is reported', () => {
    const { engine, problems, summary } = setup('rules: [{ id: hot, kind: above, metric: t, threshold: 30 }]', { d1: { alerts: 'nonsense here' } });
    expect(problems).toHaveLength(1);
    engine.onReadings(readings('d1', [[T0, { t: 31 }]]), T0);
    engine.setFileRules(parseRulesText('rules: [{ id: hot, kind: above, metric: t, threshold: 40, clear: 35 }]').rules.map(resolveRule), T0 + 1);
    expect(engine.statesOf('d1')).toMatchObject([{ rule: 'hot', state: 'firing', threshold: 40, clear: 35 }]);
    engine.onReadings(readings('d1', [[T0 + 2, { t: 34 }]]), T0 + 2);
    expect(summary()).toEqual(['d1/hot:firing', 'd1/hot:resolved']);
  });
});
