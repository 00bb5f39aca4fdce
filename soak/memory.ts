/**
 * Memory over the soak: RSS of every process sampled from /proc, and a judgement per process of
 * whether it grew the way a leak does.
 *
 * A restart resets RSS, so only the samples since a process's last start count, and only after a
 * warm-up (V8 grows its heap and JIT caches for a while after start-up). What remains is split in
 * thirds; the growth is the median of the last third minus the median of the first (medians, so that a
 * GC sawtooth does not count). A leak is growth above max(LEAK_MIN_MIB, LEAK_RATIO × the first third):
 * a process that settled at 100 MiB may wobble by tens of MiB, but not climb by half its size again
 * within one run. Too few samples since the last start (restarted near the end): not judged.
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

export interface ProcessMemory {
  startMiB: number | null;
  endMiB: number | null;
  restarts: number;
  /** Of the last life, after warm-up. */
  judged: { fromS: number; toS: number; firstMiB: number; lastMiB: number; growthMiB: number; limitMiB: number } | null;
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

/**
 * Judges one process: `samples` of the whole soak, `lastStartT` when its current life began (ms since
 * the soak started), `warmupMs` to skip after that start.
 */
export function judgeMemory(samples: RssSample[], options: { lastStartT: number; warmupMs: number; restarts: number; judge?: boolean }): ProcessMemory {
  const startMiB = samples[0]?.rssMiB ?? null;
  const endMiB = samples.at(-1)?.rssMiB ?? null;
  const base = { startMiB, endMiB, restarts: options.restarts };
  if (options.judge === false) return { ...base, judged: null, leak: false, note: 'not ours: reported, not judged' };
  const settled = samples.filter((s) => s.t >= options.lastStartT + options.warmupMs);
  if (settled.length < MIN_JUDGED_SAMPLES) return { ...base, judged: null, leak: false, note: `too few samples after warm-up since the last start (${settled.length})` };
  const third = Math.floor(settled.length / 3);
  const firstMiB = median(settled.slice(0, third).map((s) => s.rssMiB));
  const lastMiB = median(settled.slice(-third).map((s) => s.rssMiB));
  const growthMiB = Math.round((lastMiB - firstMiB) * 10) / 10;
  const limitMiB = Math.round(Math.max(LEAK_MIN_MIB, LEAK_RATIO * firstMiB));
  return {
    ...base,
    judged: { fromS: Math.round(settled[0]!.t / 1000), toS: Math.round(settled.at(-1)!.t / 1000), firstMiB, lastMiB, growthMiB, limitMiB },
    leak: growthMiB > limitMiB,
  };
}
