/**
 * Memory over the soak: RSS of every process sampled from /proc, and a judgement per process of
 * whether it grew the way a leak does.
 *
 * A restart resets RSS, so each life of a process (from one start to the next) is judged on its own,
 * and only after a warm-up (V8 grows its heap and JIT caches for a while after start-up). What remains
 * is split in thirds; the growth is the median of the last third minus the median of the first
 * (medians, so that a GC sawtooth does not count). A leak is growth above max(LEAK_MIN_MIB, LEAK_RATIO ×
 * the first third): a process that settled at 100 MiB may wobble by tens of MiB, but not climb by a third
 * of its size again within one life. A life with too few samples after warm-up is not judged.
 */
import { readFile } from 'node:fs/promises';

export const LEAK_MIN_MIB = 48;
export const LEAK_RATIO = 0.35;
const MIN_JUDGED_SAMPLES = 9;

export interface RssSample {
  /** Milliseconds since the soak started. */
  t: number;
  rssMiB: number;
}

export interface LifeMemory {
  fromS: number;
  toS: number;
  firstMiB: number;
  lastMiB: number;
  growthMiB: number;
  limitMiB: number;
}

export interface ProcessMemory {
  startMiB: number | null;
  endMiB: number | null;
  restarts: number;
  /** The longest life judged (after warm-up); every judged life counts for `leak`. */
  judged: LifeMemory | null;
  livesJudged: number;
  leak: boolean;
  note?: string;
}

export async function rssMiB(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  const kb = status === undefined ? undefined : /VmRSS:\s+(\d+)/.exec(status)?.[1];
  return kb === undefined ? undefined : Math.round((Number(kb) / 1024) * 10) / 10;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function judgeLife(settled: RssSample[]): LifeMemory {
  const third = Math.floor(settled.length / 3);
  const firstMiB = median(settled.slice(0, third).map((s) => s.rssMiB));
  const lastMiB = median(settled.slice(-third).map((s) => s.rssMiB));
  return {
    fromS: Math.round(settled[0]!.t / 1000),
    toS: Math.round(settled.at(-1)!.t / 1000),
    firstMiB,
    lastMiB,
    growthMiB: Math.round((lastMiB - firstMiB) * 10) / 10,
    limitMiB: Math.round(Math.max(LEAK_MIN_MIB, LEAK_RATIO * firstMiB)),
  };
}

/**
 * Judges one process: `samples` of the whole soak, `starts` when each of its lives began (ms since the
 * soak started), `warmupMs` to skip after each start. A life too short to judge is left out.
 *
 * `pauses` are stretches not judged at all — the overload phase: a burst raises a process's footprint
 * for good (V8 keeps the heap it grew, queues filled and drained) without leaking. A life ends where a
 * pause begins, and a new one, with its own warm-up, begins where it ends; that is not a restart.
 */
export function judgeMemory(samples: RssSample[], options: { starts: number[]; warmupMs: number; judge?: boolean; pauses?: { from: number; to: number }[] }): ProcessMemory {
  const base = { startMiB: samples[0]?.rssMiB ?? null, endMiB: samples.at(-1)?.rssMiB ?? null, restarts: Math.max(0, options.starts.length - 1) };
  if (options.judge === false) return { ...base, judged: null, livesJudged: 0, leak: false, note: 'not ours: reported, not judged' };
  const pauses = options.pauses ?? [];
  const beginnings = [...options.starts, ...pauses.map((p) => p.to)].sort((a, b) => a - b);
  const lives = beginnings
    .map((begin, i) => {
      const end = Math.min(beginnings[i + 1] ?? Infinity, ...pauses.map((p) => p.from).filter((from) => from >= begin));
      return samples.filter((s) => s.t >= begin + options.warmupMs && s.t < end);
    })
    .filter((settled) => settled.length >= MIN_JUDGED_SAMPLES)
    .map(judgeLife);
  if (lives.length === 0) return { ...base, judged: null, livesJudged: 0, leak: false, note: 'no life long enough to judge after warm-up' };
  const longest = lives.reduce((a, b) => (b.toS - b.fromS > a.toS - a.fromS ? b : a));
  const leaking = lives.find((life) => life.growthMiB > life.limitMiB);
  return { ...base, judged: leaking ?? longest, livesJudged: lives.length, leak: leaking !== undefined };
}
