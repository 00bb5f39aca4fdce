// Loaded into a benchmarked process with `node --import ./bench/gc-observer.js` (plain JavaScript: it runs
// before the process registers its TypeScript loader). It counts the process's garbage-collection pauses
// by kind and length, and writes the running totals as JSON to $SENSORPIPE_BENCH_GC_FILE twice a second,
// so the bench can tell how much of each phase a process spent paused.
import { renameSync, writeFileSync } from 'node:fs';
import { PerformanceObserver, constants } from 'node:perf_hooks';

const file = process.env.SENSORPIPE_BENCH_GC_FILE;
const KINDS = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};
/** Upper bounds (ms) of the pause-length buckets; the last bucket is everything longer (bench/live.ts reads them). */
const PAUSE_BUCKETS_MS = [5, 10, 25, 50];

if (file !== undefined) {
  const totals = {};
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = KINDS[entry.detail?.kind] ?? 'other';
      const t = (totals[kind] ??= { pauses: 0, ms: 0, byLengthMs: new Array(PAUSE_BUCKETS_MS.length + 1).fill(0) });
      t.pauses++;
      t.ms += entry.duration;
      const bucket = PAUSE_BUCKETS_MS.findIndex((bound) => entry.duration <= bound);
      t.byLengthMs[bucket < 0 ? PAUSE_BUCKETS_MS.length : bucket]++;
    }
  }).observe({ entryTypes: ['gc'] });
  // Written aside and renamed over the file, so that a reader never sees it empty or half-written.
  setInterval(() => {
    writeFileSync(`${file}.tmp`, JSON.stringify(totals));
    renameSync(`${file}.tmp`, file);
  }, 500).unref();
}
