/**
 * One (rule, device) pair's state, as a pure function of what it saw: ok → pending (past the threshold,
 * waiting out the rule's `for`) → firing → ok once the value is back past the clear value. The clear
 * value sits on the healthy side of the threshold (hysteresis), so a value hovering at the threshold
 * fires once and resolves once, instead of flapping. Between the two values nothing changes: a firing
 * rule keeps firing, an ok one stays ok, and a pending one goes back to ok (it never reached firing).
 */
import { firesAbove, type ResolvedRule } from '../core/alert-rules.ts';

export type CellState = 'ok' | 'pending' | 'firing';

export interface Cell {
  state: CellState;
  /** Since when (ms) the cell is in this state. */
  since: number;
  /** The newest value evaluated (null: none yet, or the rule's input has no value now). */
  value: number | null;
}

export type Change = 'firing' | 'resolved';

export function newCell(now: number): Cell {
  return { state: 'ok', since: now, value: null };
}

/** Past the threshold: the rule wants to fire. */
export function breaches(rule: Pick<ResolvedRule, 'kind' | 'threshold'>, value: number): boolean {
  return firesAbove(rule.kind) ? value > rule.threshold : value < rule.threshold;
}

/** Back past the clear value: a firing rule resolves. */
export function clears(rule: Pick<ResolvedRule, 'kind' | 'clear'>, value: number): boolean {
  return firesAbove(rule.kind) ? value <= rule.clear : value >= rule.clear;
}

/**
 * The cell after seeing `value` at `now` (a value of null only lets time pass: a pending cell whose
 * `for` is over fires on its last value). Mutates `cell`; returns the change to announce, if any.
 */
export function step(cell: Cell, rule: Pick<ResolvedRule, 'kind' | 'threshold' | 'clear' | 'forMs'>, value: number | null, now: number): Change | undefined {
  if (value !== null) cell.value = value;
  const current = cell.value;
  if (current === null) return undefined;
  switch (cell.state) {
    case 'ok':
      if (!breaches(rule, current)) return undefined;
      if (rule.forMs <= 0) return enter(cell, 'firing', now);
      enter(cell, 'pending', now);
      return undefined;
    case 'pending':
      if (!breaches(rule, current)) {
        enter(cell, 'ok', now);
        return undefined;
      }
      return now - cell.since >= rule.forMs ? enter(cell, 'firing', now) : undefined;
    case 'firing':
      return clears(rule, current) ? (enter(cell, 'ok', now), 'resolved') : undefined;
  }
}

function enter(cell: Cell, state: CellState, now: number): Change | undefined {
  cell.state = state;
  cell.since = now;
  return state === 'firing' ? 'firing' : undefined;
}
