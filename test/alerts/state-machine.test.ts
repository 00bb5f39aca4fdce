/** The (rule, device) state machine and the window readers: pure, table-driven. */
import { describe, expect, it } from 'vitest';
import type { ResolvedRule } from '../../core/alert-rules.ts';
import { newCell, step, type Change } from '../../alerts/state-machine.ts';
import { CounterWindow, RateWindow } from '../../alerts/windows.ts';

type Rule = Pick<ResolvedRule, 'kind' | 'threshold' | 'clear' | 'forMs'>;

/** Feeds [time, value|null] steps; returns every announced change with its time, and the final state. */
function run(rule: Rule, steps: [number, number | null][]) {
  const cell = newCell(0);
  const changes: [number, Change][] = [];
  for (const [t, v] of steps) {
    const change = step(cell, rule, v, t);
    if (change !== undefined) changes.push([t, change]);
  }
  return { changes, state: cell.state };
}

describe('state machine', () => {
  const above: Rule = { kind: 'above', threshold: 30, clear: 28, forMs: 0 };

  it.each<[string, Rule, [number, number | null][], [number, Change][], string]>([
    ['fires past the threshold at once without `for`', above, [[1, 29], [2, 31]], [[2, 'firing']], 'firing'],
    ['the threshold itself is not past it', above, [[1, 30]], [], 'ok'],
    ['resolves only at or below the clear value', above, [[1, 31], [2, 29], [3, 28.5], [4, 28]], [[1, 'firing'], [4, 'resolved']], 'ok'],
    ['a value hovering at the threshold does not flap', above, [[1, 30.1], [2, 29.9], [3, 30.2], [4, 29.8], [5, 30.05], [6, 29.95]], [[1, 'firing']], 'firing'],
    ['without hysteresis it would resolve at the threshold', { ...above, clear: 30 }, [[1, 30.1], [2, 29.9]], [[1, 'firing'], [2, 'resolved']], 'ok'],
    ['below fires under, resolves at the clear value above', { kind: 'below', threshold: 5, clear: 7, forMs: 0 }, [[1, 4], [2, 6], [3, 7]], [[1, 'firing'], [3, 'resolved']], 'ok'],
    ['`for`: pending first, fires once the duration is over', { ...above, forMs: 10 }, [[0, 31], [5, 32], [9, null], [10, null]], [[10, 'firing']], 'firing'],
    ['`for`: back under the threshold while pending, no event', { ...above, forMs: 10 }, [[0, 31], [5, 29.5], [10, null], [20, null]], [], 'ok'],
    ['`for` restarts after a dip', { ...above, forMs: 10 }, [[0, 31], [5, 29], [6, 31], [15, null], [16, null]], [[16, 'firing']], 'firing'],
    ['time alone does nothing before any value', { ...above, forMs: 10 }, [[0, null], [50, null]], [], 'ok'],
    ['completeness fires under the threshold', { kind: 'completeness', threshold: 90, clear: 95, forMs: 0 }, [[1, 100], [2, 80], [3, 92], [4, 96]], [[2, 'firing'], [4, 'resolved']], 'ok'],
    ['rejections fire over the threshold (0: any)', { kind: 'rejections', threshold: 0, clear: 0, forMs: 0 }, [[1, 0], [2, 1], [3, 0]], [[2, 'firing'], [3, 'resolved']], 'ok'],
  ])('%s', (_name, rule, steps, changes, state) => {
    const result = run(rule, steps);
    expect(result.changes).toEqual(changes);
    expect(result.state).toBe(state);
  });
});

describe('counter window', () => {
  it('counts the increase within the window, the first value a baseline', () => {
    const w = new CounterWindow(10_000);
    w.add(0, 100); // a retained count read at start: not an increase
    expect(w.increase(0)).toBe(0);
    w.add(1000, 103);
    expect(w.increase(1000)).toBe(3);
    w.add(5000, 104);
    expect(w.increase(5000)).toBe(4);
    // The window slides: at 12 s, the baseline is the sample at 1 s.
    expect(w.increase(12_000)).toBe(1);
    // At 20 s the newest is the only one left: nothing within the window.
    expect(w.increase(20_000)).toBe(0);
  });

  it('a decrease is a reset: the new value counts as increase', () => {
    const w = new CounterWindow(60_000);
    w.add(0, 50);
    w.add(1000, 52);
    w.add(2000, 3); // ingest restarted its counting
    expect(w.increase(2000)).toBe(5);
  });
});

describe('rate window', () => {
  it('change per minute between the oldest and newest reading in the window', () => {
    const w = new RateWindow(60_000, 60_000);
    expect(w.add(0, 20)).toBeUndefined();
    expect(w.add(30_000, 21)).toBeCloseTo(2);
    expect(w.add(60_000, 23)).toBeCloseTo(3);
    // 0 s drops out of the window at 90 s: (23.5 - 21) over 60 s.
    expect(w.add(90_000, 23.5)).toBeCloseTo(2.5);
  });
});
