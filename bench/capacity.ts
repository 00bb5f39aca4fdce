/**
 * Ingest capacity: the saturation ladder (issue 14, item 6). Prints JSON.
 *
 * Capacity is the highest offered rate at which a run stores at least 98 % of the readings offered, loses
 * none it acknowledged, and keeps the publish→live p99 within 1 s (bench/ladder.ts). Each rung is one
 * bench/ingest.ts run (fresh broker, ingest and store: devices → broker → ingest → store, QoS 1,
 * signatures on, payloads built and signed before the timed phase) of `--rung-seconds`. The search starts
 * at `--start` readings/s and multiplies the rate by `--factor` until a rung fails (divides, if the first
 * one fails), then bisects the last pass … fail bracket `--bisections` times. With `--repeats N` the
 * whole search runs N times and the capacity is the median.
 *
 * Then it runs `--multiples` of that capacity (1×, 1.5×, 2× and 3×) for `--seconds` each, N times each,
 * and reports for each the medians and spreads of: readings stored per second (of the offered window, and
 * until the pipeline had stored everything it acknowledged), RSS peaks of broker and ingest, publish→live
 * p99, lost, readings held back on the devices (unacknowledged by a broker applying backpressure), the
 * broker's queue for ingest (sensorpipe_broker_queued_messages, where the broker has it), and CPU µs per
 * stored reading for broker and ingest.
 *
 *   npx tsx bench/capacity.ts [--store influx|embedded] [--start 5000] [--factor 1.25] [--bisections 1]
 *                             [--max-rungs 16] [--rung-seconds 20] [--seconds 60] [--multiples 1,1.5,2,3]
 *                             [--repeats 3] [--broker-wal on|off] [--devices 100] [--window 1000]
 *                             [--capacity N]   (no search: the overload runs at multiples of N)
 *   npx tsx bench/capacity.ts --quick     (10 s rungs, 15 s multiples, 1 repeat: checks the script, not for quoting)
 *
 * The judged figures are the 60 s runs (`--seconds 60`, the default) and medians of 3 (`--repeats 3`).
 * Progress goes to stderr, one line per run.
 */
import { loadavg } from 'node:os';
import { argValue, machine, printJson, runBenchScript } from './lib.ts';
import { DEFAULT_CRITERIA, DEFAULT_LADDER, judgeRung, searchCapacity, type LadderOptions, type RungVerdict } from './ladder.ts';
import { median, repeated, round } from './stats.ts';

const quick = process.argv.includes('--quick');
const store = argValue('store', 'influx');
const ladder: LadderOptions = {
  ...DEFAULT_LADDER,
  startRate: Number(argValue('start', String(DEFAULT_LADDER.startRate))),
  factor: Number(argValue('factor', String(DEFAULT_LADDER.factor))),
  bisections: Number(argValue('bisections', String(DEFAULT_LADDER.bisections))),
  maxRungs: Number(argValue('max-rungs', String(DEFAULT_LADDER.maxRungs))),
  roundTo: Number(argValue('round', String(DEFAULT_LADDER.roundTo))),
};
const rungSeconds = Number(argValue('rung-seconds', quick ? '10' : '20'));
const seconds = Number(argValue('seconds', quick ? '15' : '60'));
const repeats = Math.max(1, Number(argValue('repeats', quick ? '1' : '3')));
const multiples = argValue('multiples', '1,1.5,2,3').split(',').map(Number).filter((m) => m > 0);
const passThrough = ['broker-wal', 'devices', 'window', 'tick', 'catch-up-max'].flatMap((name) => {
  const value = argValue(name, '');
  return value === '' ? [] : [`--${name}`, value];
});

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- bench/ingest.ts's JSON

/** One bench/ingest.ts run; its JSON, or { failed } with the end of its stderr. */
function ingestRun(rate: number, runSeconds: number): Promise<Json> {
  // Latency leaves out the first seconds (cold code everywhere): bench/ingest.ts's default, 5 s or a quarter of a shorter run.
  return runBenchScript('bench/ingest.ts', ['--store', store, '--rate', String(rate), '--seconds', String(runSeconds), ...passThrough]);
}

/** The parts of a run the report keeps. */
function summary(run: Json): Json {
  if (run.failed === true) return { failed: true, exitCode: run.exitCode, stderr: run.stderr };
  return {
    offered: run.offered,
    sent: run.sent,
    acknowledged: run.acknowledged,
    heldOnDevices: run.heldOnDevices,
    unacknowledgedAtEnd: run.unacknowledgedAtEnd,
    deviceDisconnects: run.deviceDisconnects,
    stored: run.stored,
    lost: run.lost,
    caughtUp: run.caughtUp,
    catchUpSeconds: run.catchUpSeconds,
    storedPerSecond: run.storedPerSecond,
    storedPerSecondUntilCaughtUp: run.storedPerSecondUntilCaughtUp,
    p99Ms: run.publishToLiveMs?.p99 ?? null,
    p50Ms: run.publishToLiveMs?.p50 ?? null,
    cpuMicrosPerReading: run.cpuMicrosPerReading,
    cpuCores: run.cpuCores,
    rssMiB: run.rssMiB,
    brokerQueuedMessages: run.brokerQueuedMessages,
    loadGenerator: run.loadGenerator,
    loadAverageBefore: run.loadAverage?.before,
  };
}

function verdictOf(run: Json): RungVerdict {
  return judgeRung({ offered: run.offered ?? 0, stored: run.stored ?? 0, lost: typeof run.lost === 'number' ? run.lost : null, p99Ms: run.publishToLiveMs?.p99 ?? null, failed: run.failed === true }, DEFAULT_CRITERIA);
}

const log = (line: string) => process.stderr.write(`capacity: ${line}\n`);
const loadavgBefore = loadavg().map((x) => round(x, 2));

// `--capacity N`: the overload runs alone, at multiples of a capacity measured before (a search takes
// ~20 min of the machine; the JSON says the capacity was given, not searched).
const givenCapacity = argValue('capacity', '') === '' ? undefined : Number(argValue('capacity', ''));
const searches: Json[] = [];
for (let search = 0; givenCapacity === undefined && search < repeats; search++) {
  const result = await searchCapacity(async (rate) => {
    const run = await ingestRun(rate, rungSeconds);
    const verdict = verdictOf(run);
    log(`search ${search + 1}/${repeats}: ${rate}/s for ${rungSeconds} s: ${verdict.passed ? 'pass' : `fail (${verdict.reasons.join('; ')})`}`);
    return { ...verdict, ...summary(run) };
  }, ladder);
  searches.push(result);
  log(`search ${search + 1}/${repeats}: capacity ${result.capacity ?? 'none'}${result.bounded ? '' : ' (no rung failed: at least this)'}`);
}
const capacities = givenCapacity === undefined ? searches.map((s) => s.capacity as number | null) : [givenCapacity];
const capacity = median(capacities.filter((c): c is number => c !== null));

const atMultiples: Json[] = [];
if (capacity !== null) {
  for (const multiple of multiples) {
    const rate = Math.round((capacity * multiple) / ladder.roundTo) * ladder.roundTo;
    const runs: Json[] = [];
    for (let rep = 0; rep < repeats; rep++) {
      const run = await ingestRun(rate, seconds);
      const verdict = verdictOf(run);
      log(`${multiple}× capacity = ${rate}/s for ${seconds} s, run ${rep + 1}/${repeats}: stored ${run.storedPerSecond ?? '?'}/s, p99 ${run.publishToLiveMs?.p99 ?? '?'} ms, lost ${run.lost ?? '?'}${run.failed === true ? ' (the run failed)' : ''}`);
      runs.push({ ...summary(run), passed: verdict.passed, reasons: verdict.reasons });
    }
    const figure = (pick: (run: Json) => unknown) => repeated(runs.map((r) => (r.failed === true ? null : (pick(r) as number | null | undefined))));
    atMultiples.push({
      multiple,
      rate,
      seconds,
      storedPerSecond: figure((r) => r.storedPerSecond),
      storedPerSecondUntilCaughtUp: figure((r) => r.storedPerSecondUntilCaughtUp),
      p99Ms: figure((r) => r.p99Ms),
      lost: figure((r) => r.lost),
      heldOnDevices: figure((r) => r.heldOnDevices),
      caughtUpEveryRun: runs.every((r) => r.caughtUp === true),
      catchUpSeconds: figure((r) => r.catchUpSeconds),
      rssPeakMiB: { broker: figure((r) => r.rssMiB?.broker?.peak), ingest: figure((r) => r.rssMiB?.ingest?.peak) },
      brokerQueuedPeak: figure((r) => r.brokerQueuedMessages?.peak),
      cpuMicrosPerReading: { broker: figure((r) => r.cpuMicrosPerReading?.broker), ingest: figure((r) => r.cpuMicrosPerReading?.ingest) },
      cpuCores: { broker: figure((r) => r.cpuCores?.broker), ingest: figure((r) => r.cpuCores?.ingest), loadGenerator: figure((r) => r.cpuCores?.loadGenerator) },
      meetsCapacityCriteria: runs.map((r) => r.passed),
      runs,
    });
  }
}

printJson({
  bench: 'capacity',
  machine: machine(),
  store,
  criteria: DEFAULT_CRITERIA,
  ladder,
  rungSeconds,
  seconds,
  repeats,
  quick,
  passThrough,
  loadAverage: { before: loadavgBefore, after: loadavg().map((x) => round(x, 2)) },
  capacity: { ...repeated(capacities), bounded: searches.every((s) => s.bounded === true) },
  searches,
  atMultiples,
});
