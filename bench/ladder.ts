/**
 * The saturation ladder of bench/capacity.ts (issue 14, item 6), as pure functions so that
 * test/bench/ladder.test.ts can check the search without running anything.
 *
 * Capacity is the highest offered rate at which a run stores at least 98 % of what was offered, loses
 * nothing it acknowledged, and keeps the publish→live p99 within 1 s. The search starts at a rate and
 * steps up by a factor until a rung fails (or down, if the first one fails), then bisects the last
 * bracket (pass … fail) once, or as often as asked.
 */

export interface CapacityCriteria {
  /** Stored readings at least this share of the offered ones. */
  minStoredShare: number;
  /** Acknowledged readings missing from the store, at most. */
  maxLost: number;
  /** publish→live p99 (ms) at most. */
  maxP99Ms: number;
}

export const DEFAULT_CRITERIA: CapacityCriteria = { minStoredShare: 0.98, maxLost: 0, maxP99Ms: 1000 };

/** What a rung's run reported (bench/ingest.ts's JSON, the parts that are judged). */
export interface RungOutcome {
  offered: number;
  stored: number;
  /** null when it could not be established (the run failed). */
  lost: number | null;
  p99Ms: number | null;
  /** The run itself failed (a process died, no JSON): never a pass. */
  failed?: boolean;
}

export interface RungVerdict {
  passed: boolean;
  /** Why it failed, one entry per criterion missed ([] when it passed). */
  reasons: string[];
}

export function judgeRung(outcome: RungOutcome, criteria: CapacityCriteria = DEFAULT_CRITERIA): RungVerdict {
  const reasons: string[] = [];
  if (outcome.failed === true) reasons.push('the run failed');
  if (!(outcome.offered > 0)) reasons.push('nothing was offered');
  else if (outcome.stored < criteria.minStoredShare * outcome.offered) reasons.push(`stored ${outcome.stored} < ${criteria.minStoredShare} × offered ${outcome.offered}`);
  if (outcome.lost === null) reasons.push('loss unknown');
  else if (outcome.lost > criteria.maxLost) reasons.push(`lost ${outcome.lost}`);
  if (outcome.p99Ms === null) reasons.push('no latency samples');
  else if (outcome.p99Ms > criteria.maxP99Ms) reasons.push(`p99 ${outcome.p99Ms} ms > ${criteria.maxP99Ms} ms`);
  return { passed: reasons.length === 0, reasons };
}

export interface LadderOptions {
  startRate: number;
  /** Each step up multiplies the rate by this (down: divides). > 1. */
  factor: number;
  /** Bisections of the pass … fail bracket once it exists (0: none). */
  bisections: number;
  /** At most this many rungs in all. */
  maxRungs: number;
  /** Rates are rounded to a multiple of this. */
  roundTo: number;
  /** Never offer less than this (a search that fails down to here ends without a capacity). */
  minRate: number;
}

export const DEFAULT_LADDER: LadderOptions = { startRate: 5000, factor: 1.25, bisections: 1, maxRungs: 16, roundTo: 100, minRate: 100 };

export interface Rung {
  rate: number;
  passed: boolean;
}

function roundRate(rate: number, options: LadderOptions): number {
  return Math.max(options.minRate, Math.round(rate / options.roundTo) * options.roundTo);
}

/** Highest passing rate below the lowest failing one (what is known so far), and that failing rate. */
function bracket(history: readonly Rung[]): { pass: number | undefined; fail: number | undefined } {
  const failures = history.filter((r) => !r.passed).map((r) => r.rate);
  const fail = failures.length > 0 ? Math.min(...failures) : undefined;
  const passes = history.filter((r) => r.passed && (fail === undefined || r.rate < fail)).map((r) => r.rate);
  return { pass: passes.length > 0 ? Math.max(...passes) : undefined, fail };
}

/** The next rate to try, or undefined when the search is over. */
export function nextRate(history: readonly Rung[], options: LadderOptions = DEFAULT_LADDER): number | undefined {
  if (history.length === 0) return roundRate(options.startRate, options);
  if (history.length >= options.maxRungs) return undefined;
  const tried = new Set(history.map((r) => r.rate));
  const { pass, fail } = bracket(history);
  if (fail === undefined) {
    // Every rung passed so far: step up.
    const next = roundRate(pass! * options.factor, options);
    return tried.has(next) ? roundRate(pass! + options.roundTo, options) : next;
  }
  if (pass === undefined) {
    // Every rung failed so far: step down, not below the floor.
    if (fail <= options.minRate) return undefined;
    const next = roundRate(fail / options.factor, options);
    if (!tried.has(next)) return next;
    const below = roundRate(fail - options.roundTo, options);
    return tried.has(below) ? undefined : below;
  }
  // A bracket: bisect it as often as asked. The rungs run since it first formed are the bisections.
  const firstBracketAt = history.findIndex((_, i) => {
    const b = bracket(history.slice(0, i + 1));
    return b.pass !== undefined && b.fail !== undefined;
  });
  const bisectionsDone = history.length - 1 - firstBracketAt;
  if (bisectionsDone >= options.bisections) return undefined;
  const mid = roundRate((pass + fail) / 2, options);
  return mid <= pass || mid >= fail || tried.has(mid) ? undefined : mid;
}

export interface CapacityResult {
  /** Highest passing rate below every failing one; null when no rung passed. */
  capacity: number | null;
  /** False when no rung failed: the capacity is at least this much (the ladder ran out of rungs). */
  bounded: boolean;
}

export function capacityOf(history: readonly Rung[]): CapacityResult {
  const { pass, fail } = bracket(history);
  return { capacity: pass ?? null, bounded: fail !== undefined };
}

/** Runs a whole search: `runRung` runs one rung and says whether it passed. */
export async function searchCapacity<T extends { passed: boolean }>(runRung: (rate: number) => Promise<T>, options: LadderOptions = DEFAULT_LADDER): Promise<{ rungs: (T & { rate: number })[] } & CapacityResult> {
  const rungs: (T & { rate: number })[] = [];
  for (let rate = nextRate(rungs, options); rate !== undefined; rate = nextRate(rungs, options)) {
    rungs.push({ ...(await runRung(rate)), rate });
  }
  return { rungs, ...capacityOf(rungs) };
}
