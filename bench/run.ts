/**
 * `npm run bench`: runs every bench/ script one after another (never two at once: they share 2 cores),
 * then writes bench/results/latest.json (every script's whole JSON) and bench/results/latest.md (one
 * table: each figure beside its baseline measured in the same run, the ratio, the target from its issue,
 * and whether it was met).
 *
 *   npm run bench [-- --repeats 3] [-- --only broker,capacity]
 *   npm run bench -- --quick      (short runs, 1 repeat: to check the scripts, not to quote)
 *   npm run bench -- --from bench/results/latest.json   (only re-render the table from saved results)
 *
 * A full run writes bench/results/latest.{json,md}; a quick run quick.*, a run with --only partial.*, so
 * that neither replaces the full report; --from rewrites the file it read (and its .md).
 *
 * Every judged figure (a row with a target) is the median of `--repeats` runs (default 3), shown with
 * its range; a script that repeats internally (broker, store, capacity) is given the count, the others
 * are run that many times. The machine is shared: a single run decides nothing, and the spread says how
 * far apart the runs were. The whole run takes about 1.5 hours with 3 repeats.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { argValue, machine, runBenchScript } from './lib.ts';
import { formatRepeated, repeated, type Repeated } from './stats.ts';

const quick = process.argv.includes('--quick');
const repeats = Math.max(1, Number(argValue('repeats', quick ? '1' : '3')));
const only = argValue('only', '').split(',').filter((name) => name !== '');
const root = new URL('..', import.meta.url).pathname;

/** `inside`: the script takes the repeat count itself (its flag); otherwise it is run `repeats` times. */
interface Run { name: string; script: string; args: string[]; inside?: string }

// 30 s runs (60 s before issue 17's rows were added): the whole report stays within about two hours.
const ingestSeconds = quick ? '5' : '30';
const batchArgs = ['--rate', quick ? '20000' : '100000', '--seconds', quick ? '5' : '30', '--per-message', '100'];
const capacityArgs = quick ? ['--quick', '--start', '4000', '--factor', '1.5', '--max-rungs', '4', '--bisections', '0', '--seconds', '10'] : ['--start', '12500'];
const RUNS: Run[] = [
  { name: 'broker', script: 'broker.ts', args: quick ? ['--seconds', '2', '--idle', '1000'] : ['--seconds', '10', '--idle', '10000'], inside: '--repeats' },
  { name: 'store', script: 'store.ts', args: quick ? ['--seconds', '3600', '--runs', '3'] : [], inside: '--reps' },
  { name: 'ingestInflux', script: 'ingest.ts', args: ['--store', 'influx', '--rate', '10000', '--seconds', ingestSeconds] },
  { name: 'ingestInfluxPassthrough', script: 'ingest.ts', args: ['--store', 'influx', '--rate', '10000', '--seconds', ingestSeconds, '--ingest', 'passthrough'] },
  { name: 'ingestEmbedded', script: 'ingest.ts', args: ['--store', 'embedded', '--rate', '10000', '--seconds', ingestSeconds] },
  { name: 'ingestEmbeddedPassthrough', script: 'ingest.ts', args: ['--store', 'embedded', '--rate', '10000', '--seconds', ingestSeconds, '--ingest', 'passthrough'] },
  { name: 'ingestLatency', script: 'ingest.ts', args: ['--store', 'influx', '--rate', '5000', '--seconds', ingestSeconds] },
  { name: 'ingestLatencyPassthrough', script: 'ingest.ts', args: ['--store', 'influx', '--rate', '5000', '--seconds', ingestSeconds, '--ingest', 'passthrough'] },
  { name: 'batchInflux', script: 'ingest.ts', args: ['--store', 'influx', ...batchArgs] },
  { name: 'batchInfluxPassthrough', script: 'ingest.ts', args: ['--store', 'influx', ...batchArgs, '--ingest', 'passthrough'] },
  { name: 'batchEmbedded', script: 'ingest.ts', args: ['--store', 'embedded', ...batchArgs] },
  { name: 'capacity', script: 'capacity.ts', args: ['--store', 'influx', ...capacityArgs], inside: '--repeats' },
  // The embedded store's ladder, and 1× of it (CPU per reading at capacity); the overload runs are InfluxDB's.
  { name: 'capacityEmbedded', script: 'capacity.ts', args: ['--store', 'embedded', ...capacityArgs, '--multiples', '1'], inside: '--repeats' },
  { name: 'ab15', script: 'ab.ts', args: quick ? ['--quick'] : [], inside: '--repeats' },
  { name: 'live', script: 'live.ts', args: quick ? ['--clients', '100', '--seconds', '5', '--slow-seconds', '5'] : [] },
  { name: 'sim', script: 'sim.ts', args: quick ? ['--devices', '500', '--seconds', '10'] : ['--seconds', '60'] },
  { name: 'alerts', script: 'alerts.ts', args: quick ? ['--crossings', '10', '--rates', '5000', '--seconds', '5'] : [] },
];

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- reading other scripts' JSON

function runScript(run: Run, args: string[]): Promise<Json> {
  // capacity.ts reports each rung as it goes: pass its progress on.
  return runBenchScript(join('bench', run.script), args, run.name.startsWith('capacity') ? { onStderr: (chunk) => process.stderr.write(chunk) } : {});
}

/** Every script's runs: one entry for a script that repeats inside, `repeats` for the others. */
type Results = Record<string, { runs: Json[]; loadavgBefore: number[][] }>;

interface Row {
  figure: string;
  measured: Repeated;
  unit: string;
  baseline?: { name: string; value: Repeated };
  /** When the ratio is not measured/baseline of the medians (e.g. the median of per-round ratios). */
  ratio?: number | null;
  target: string;
  met: boolean | null;
  issue: number;
}

/** The slow-viewer comparison is judged only when the two phases without slow viewers differ by at most this. */
const MAX_NOISE_FLOOR = 0.25;

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const one = (v: unknown): Repeated => repeated([num(v)]);
const ok = (runs: Json[] | undefined): Json[] => (runs ?? []).filter((r) => r.failed !== true);
const fig = (runs: Json[] | undefined, pick: (run: Json) => unknown): Repeated => repeated(ok(runs).map((r) => num(pick(r))));
const ratioOf = (a: Repeated, b: Repeated | undefined): number | null => (a.median === null || b?.median === null || b?.median === undefined || b.median === 0 ? null : Math.round((a.median / b.median) * 1000) / 1000);
const fmtN = (v: number | null | undefined, digits = 0) => (v === null || v === undefined ? '?' : v.toLocaleString('en-US', { maximumFractionDigits: digits }));
const asRepeated = (v: unknown): Repeated => (v !== null && typeof v === 'object' && 'median' in v ? (v as Repeated) : one(v));

function rows(r: Results): Row[] {
  const out: Row[] = [];

  // ---- broker (#3, and #14 item 6: the durable queue's cost) ----
  const b = ok(r.broker?.runs)[0];
  const wal = b?.walOption === true;
  const deviceRate = b?.oursConfig?.deviceRatePerSecond;
  for (const qos of ['qos0', 'qos1'] as const) {
    const t = b?.throughput?.[qos];
    const ours = wal ? t?.oursWalOff : t?.ours;
    const drops = (t?.ours?.rateLimitedDrops ?? 0) + (t?.oursWalOff?.rateLimitedDrops ?? 0);
    const subscriber = qos === 'qos1' ? 'a persistent-session subscriber at QoS 1, as ingest' : '1 subscriber';
    out.push({
      figure: `broker ${qos.toUpperCase()} delivered msg/s, 100 publishers → ${subscriber}; ours with logins, ACL, packet guard and a token bucket of ${fmtN(deviceRate)} msg/s per device (each publisher sent ~${fmtN(t?.offeredPerPublisherPerSecond)}/s; ${drops} dropped)${wal ? ', durable queue off' : ''}; CPU µs/msg ours ${fmtN(ours?.cpuMicrosPerMessage?.median, 1)}, bare ${fmtN(t?.bareAedes?.cpuMicrosPerMessage?.median, 1)}`,
      measured: asRepeated(ours?.perSecond),
      unit: 'msg/s',
      baseline: { name: 'bare aedes, same transport settings', value: asRepeated(t?.bareAedes?.perSecond) },
      ratio: num(t?.ratios?.oursVsBareAedes?.median),
      target: '≥ 90% of bare aedes',
      met: num(t?.ratios?.oursVsBareAedes?.median) === null ? null : t.ratios.oursVsBareAedes.median >= 0.9 && drops === 0,
      issue: 3,
    });
    if (wal) {
      out.push({
        figure: `broker ${qos.toUpperCase()}: the durable queue (write-ahead log) on against off, same run; CPU µs/msg on ${fmtN(t?.ours?.cpuMicrosPerMessage?.median, 1)}, off ${fmtN(t?.oursWalOff?.cpuMicrosPerMessage?.median, 1)}`,
        measured: asRepeated(t?.ours?.perSecond),
        unit: 'msg/s',
        baseline: { name: 'durable queue off', value: asRepeated(t?.oursWalOff?.perSecond) },
        ratio: num(t?.ratios?.durableQueueOnVsOff?.median),
        target: '(reported: its cost)',
        met: null,
        issue: 14,
      });
    }
    out.push({
      figure: `broker ${qos.toUpperCase()}, ours${wal ? ' (durable queue on)' : ''} against Debian Mosquitto; CPU µs/msg Mosquitto ${fmtN(t?.mosquitto?.cpuMicrosPerMessage?.median, 1)}`,
      measured: asRepeated(t?.ours?.perSecond),
      unit: 'msg/s',
      baseline: { name: 'Mosquitto', value: asRepeated(t?.mosquitto?.perSecond) },
      ratio: num(t?.ratios?.oursVsMosquitto?.median),
      target: '(reference)',
      met: null,
      issue: 3,
    });
  }
  const idle = b?.idleConnections;
  out.push({ figure: `broker RSS with ${idle?.requested ?? '?'} idle authenticated devices (${idle?.accepted ?? '?'} accepted in every run)`, measured: asRepeated(idle?.brokerRssMiB), unit: 'MiB', target: '< 1024 MiB for 10,000', met: idle ? idle.withinTarget === true : null, issue: 3 });

  // ---- store (#5) ----
  const s = ok(r.store?.runs)[0];
  const w = s?.write?.reading4;
  const landed = (x: Json | undefined) => (x?.allLanded === undefined ? 'points landed: not counted' : x.allLanded === true ? 'every point landed' : `**not every point landed** (${(x.landed as number[]).join(', ')} of ${x.points})`);
  /** Judged only when the points that landed were counted; met only when all of them did. */
  const landedMet = (x: Json | undefined, target: number): boolean | null => (num(x?.median) === null || x?.allLanded === undefined ? null : x.median >= target && x.allLanded === true);
  const rate = (x: Json | undefined): Repeated => (Array.isArray(x?.runs) ? repeated(x.runs as number[]) : one(x?.median));
  out.push({ figure: `store: InfluxDB adapter write, batches of 5,000 (${landed(w?.influxdbAdapter)}; baseline: ${landed(w?.influxdbRawLineProtocol)})`, measured: rate(w?.influxdbAdapter), unit: 'points/s', baseline: { name: 'raw line protocol over HTTP, body built before timing', value: rate(w?.influxdbRawLineProtocol) }, target: '≥ 150,000 points/s', met: landedMet(w?.influxdbAdapter, 150_000), issue: 5 });
  out.push({ figure: `store: embedded adapter write, batches of 5,000 (${landed(w?.embeddedAdapter)}; baseline: ${landed(w?.embeddedDuckdbAppender)})`, measured: rate(w?.embeddedAdapter), unit: 'points/s', baseline: { name: "DuckDB's appender, plain table, a transaction per batch", value: rate(w?.embeddedDuckdbAppender) }, target: '≥ 300,000 points/s', met: landedMet(w?.embeddedAdapter, 300_000), issue: 5 });
  out.push({ figure: 'store: 24 h of 1 s data downsampled to 1,000 points, InfluxDB (p50, median over the databases)', measured: asRepeated(s?.query?.influxdbOneSeries?.p50), unit: 'ms', target: '≤ 100 ms', met: num(s?.query?.influxdbOneSeries?.ms?.p50) === null ? null : s!.query.influxdbOneSeries.ms.p50 <= 100, issue: 5 });
  out.push({ figure: 'store: the same query, embedded (p50, median over the files)', measured: asRepeated(s?.query?.embeddedOneSeries?.p50), unit: 'ms', target: '≤ 50 ms', met: num(s?.query?.embeddedOneSeries?.ms?.p50) === null ? null : s!.query.embeddedOneSeries.ms.p50 <= 50, issue: 5 });

  // ---- ingest (#6): throughput and latency at every judged rate ----
  const ingestRuns: [string, string, number][] = [['ingestInflux', 'InfluxDB', 10_000], ['ingestEmbedded', 'embedded', 10_000], ['ingestLatency', 'InfluxDB', 5_000]];
  for (const [name, label, offered] of ingestRuns) {
    const i = r[name]?.runs;
    const p = r[`${name}Passthrough`]?.runs;
    const runs = ok(i);
    const lost = runs.map((x) => x.lost as number | null);
    const catchUp = fig(i, (x) => x.catchUpSeconds);
    if (offered === 10_000) {
      const stored = fig(i, (x) => x.storedPerSecond);
      out.push({
        figure: `ingest at 10,000 readings/s offered for ${runs[0]?.seconds ?? '?'} s, QoS 1, signatures on, ${label}: readings stored per second of the run (lost: ${lost.join(', ') || '?'}; stored everything within ${fmtN(catchUp.max, 1)} s of the end; load generator ${fmtN(fig(i, (x) => x.cpuCores?.loadGenerator).median, 2)} cores)`,
        measured: stored,
        unit: 'readings/s',
        baseline: { name: 'verification-free pass-through', value: fig(p, (x) => x.storedPerSecond) },
        // Sustained: everything offered stored, nothing lost, and no backlog left when the offer ends.
        target: '≥ 10,000/s with 0 lost, all stored ≤ 1 s after the run',
        met: runs.length > 0 ? (stored.median ?? 0) >= 10_000 && lost.every((l) => l === 0) && (catchUp.max ?? Infinity) <= 1 : null,
        issue: 6,
      });
    }
    const p99 = fig(i, (x) => x.publishToLiveMs?.p99);
    out.push({
      figure: `ingest publish→live-feed p99 at ${offered.toLocaleString('en-US')} readings/s (${label}; from each reading's due time, after a ${runs[0]?.warmupSeconds ?? '?'} s warm-up)`,
      measured: p99,
      unit: 'ms',
      baseline: { name: 'verification-free pass-through', value: fig(p, (x) => x.publishToLiveMs?.p99) },
      target: '≤ 100 ms',
      met: runs.length > 0 ? (p99.median ?? Infinity) <= 100 : null,
      issue: 6,
    });
  }

  // ---- batches: a device catching up, 100 readings a message (#17) ----
  for (const [name, label] of [['batchInflux', 'InfluxDB'], ['batchEmbedded', 'embedded']] as const) {
    const runs = ok(r[name]?.runs);
    if (runs.length === 0) continue;
    const stored = fig(runs, (x) => x.storedPerSecond);
    const lost = runs.map((x) => x.lost as number | null);
    const catchUp = fig(runs, (x) => x.catchUpSeconds);
    const offered = runs[0]!.offeredRate as number;
    const passthrough = r[`${name}Passthrough`];
    out.push({
      figure: `ingest, ${runs[0]!.readingsPerMessage} readings a message (a device catching up), ${fmtN(offered)} readings/s offered for ${runs[0]!.seconds} s, ${label}: readings stored per second (lost: ${lost.join(', ')}; all stored within ${fmtN(catchUp.max, 1)} s of the end; publish→live p99 ${formatRepeated(fig(runs, (x) => x.publishToLiveMs?.p99))} ms; CPU µs/reading broker ${formatRepeated(fig(runs, (x) => x.cpuMicrosPerReading?.broker), 1)}, ingest ${formatRepeated(fig(runs, (x) => x.cpuMicrosPerReading?.ingest), 1)}; RSS peak ingest ${formatRepeated(fig(runs, (x) => x.rssMiB?.ingest?.peak))} MiB)`,
      measured: stored,
      unit: 'readings/s',
      ...(passthrough === undefined ? {} : { baseline: { name: 'verification-free pass-through', value: fig(passthrough.runs, (x) => x.storedPerSecond) } }),
      target: '≥ 100,000/s stored, 0 lost, all stored ≤ 1 s after the run',
      met: (stored.median ?? 0) >= 100_000 && lost.every((l) => l === 0) && (catchUp.max ?? Infinity) <= 1,
      issue: 17,
    });
  }

  // ---- capacity (#14 item 6, #17) ----
  for (const name of ['capacity', 'capacityEmbedded']) {
    const c = ok(r[name]?.runs)[0];
    if (c === undefined) continue;
    const influx = c.store === 'influx';
    const criteria = `stored ≥ ${c.criteria.minStoredShare * 100} % of offered, ${c.criteria.maxLost} lost, publish→live p99 ≤ ${c.criteria.maxP99Ms} ms`;
    out.push({
      figure: `ingest capacity, ${influx ? 'InfluxDB' : c.store}: the highest offered rate with ${criteria} (${c.rungSeconds} s rungs from ${c.ladder.startRate}/s, ×${c.ladder.factor},  ${c.ladder.bisections} bisection${c.ladder.bisections === 1 ? '' : 's'}; median of ${c.repeats} search${c.repeats === 1 ? '' : 'es'}${c.capacity.bounded ? '' : '; **no rung failed: at least this**'})`,
      measured: c.capacity,
      unit: 'readings/s',
      target: influx ? '≥ 20,000/s (to resolve #17: ≥ 15,000/s)' : '(reported)',
      met: influx && c.capacity.median !== null ? c.capacity.median >= 20_000 : null,
      issue: 17,
    });
    for (const m of c.atMultiples as Json[]) {
      const cpu = m.cpuMicrosPerReading;
      // Broker + ingest per run, then the median: the two medians may come from different runs.
      const together = repeated((m.runs as Json[]).map((x) => (x.failed === true ? null : num(x.cpuMicrosPerReading?.broker) === null || num(x.cpuMicrosPerReading?.ingest) === null ? null : Math.round((x.cpuMicrosPerReading.broker + x.cpuMicrosPerReading.ingest) * 10) / 10)));
      out.push({
        figure: `ingest at ${m.multiple}× capacity = ${fmtN(m.rate)}/s offered for ${m.seconds} s${influx ? '' : ' (embedded)'}: p99 ${formatRepeated(m.p99Ms)} ms; lost ${formatRepeated(m.lost)}; held on the devices ${formatRepeated(m.heldOnDevices)}; RSS peak broker ${formatRepeated(m.rssPeakMiB.broker)} MiB, ingest ${formatRepeated(m.rssPeakMiB.ingest)} MiB; broker queue peak ${formatRepeated(m.brokerQueuedPeak)}; CPU µs/reading broker ${formatRepeated(cpu.broker, 1)}, ingest ${formatRepeated(cpu.ingest, 1)}${m.caughtUpEveryRun ? '' : '; **a run had not stored all it acknowledged when the bench gave up waiting**'}`,
        measured: m.storedPerSecondUntilCaughtUp,
        unit: 'readings stored/s',
        baseline: { name: 'offered', value: one(m.rate) },
        target: '(reported)',
        met: null,
        issue: 14,
      });
      if (m.multiple === 1) {
        out.push({
          figure: `CPU per reading at capacity (${fmtN(m.rate)}/s${influx ? ', InfluxDB' : ', embedded'}), broker + ingest together`,
          measured: together,
          unit: 'µs',
          target: '≤ 50 µs',
          met: together.median === null ? null : together.median <= 50,
          issue: 17,
        });
      }
    }
  }

  // ---- the same run before and after issue 15's changes (#15) ----
  const ab = ok(r.ab15?.runs)[0];
  if (ab !== undefined) {
    const labels: Record<string, [string, 'cost' | 'gain']> = {
      'ingest.storedPerSecond': ['ingest at 10,000/s: stored per second', 'gain'],
      'ingest.publishToLiveP99Ms': ['ingest at 10,000/s: publish→live p99 (ms)', 'cost'],
      'ingest.brokerCpuMicrosPerReading': ['ingest at 10,000/s: broker CPU µs/reading', 'cost'],
      'ingest.ingestCpuMicrosPerReading': ['ingest at 10,000/s: ingest CPU µs/reading', 'cost'],
      'live.viewerP99Ms': ['live, 1,000 viewers: publish→viewer p99 (ms)', 'cost'],
      'live.deliveriesPerSecond': ['live, 1,000 viewers: readings delivered per second', 'gain'],
      'live.displayCpuCores': ['live, 1,000 viewers: display CPU (cores)', 'cost'],
    };
    for (const [key, [label, kind]] of Object.entries(labels)) {
      const [script, figure] = key.split('.') as [string, string];
      // ab.ts names the ingest path by its rate (`ingest@10000`); runs before that was added, `ingest`.
      const x = (ab.results?.[`${script}@10000`] ?? ab.results?.[script])?.[figure];
      if (x === undefined) continue;
      const b = x.before as Repeated;
      const a = x.after as Repeated;
      // Not measurably worse: the after median within the before runs' own range (or 5 % of their median, if that is wider).
      const met = a.median === null || b.median === null || b.min === null || b.max === null ? null : kind === 'cost' ? a.median <= Math.max(b.max, b.median * 1.05) : a.median >= Math.min(b.min, b.median * 0.95);
      out.push({ figure: `before/after issue 15 (${String(ab.before.asGiven)} → ${String(ab.after.revision).slice(0, 7)}, interleaved, durable queue off): ${label}`, measured: a, unit: '', baseline: { name: 'before', value: b }, ratio: num(x.afterOverBefore), target: 'not measurably worse (within the before runs\' range, or 5 %)', met, issue: 15 });
    }
  }

  // ---- live (#7) ----
  const v = ok(r.live?.runs);
  const v0 = v[0];
  const normalP99 = fig(v, (x) => x.normal?.latencyMs?.p99);
  const slowP99 = fig(v, (x) => x.withSlow?.latencyMs?.p99);
  const change = fig(v, (x) => x.p99ChangeWithSlow);
  const noise = repeated(v.map((x) => (typeof x.p99ChangeAfterVsBefore === 'number' ? Math.abs(x.p99ChangeAfterVsBefore) : null)));
  const threshold = Math.max(0.1, noise.median ?? Infinity);
  // Above this noise floor the run cannot tell a 10 % effect from the machine's own wander: not judged.
  const judgeable = threshold <= MAX_NOISE_FLOOR;
  const slowPresent = v.every((x) => (x.withSlow?.slowViewersAtDisplay?.atDisplayMin ?? 0) > 0);
  out.push({ figure: `live: publish→viewer p99, ${v0?.viewers ?? '?'} viewers, ${v0?.offeredReadingsPerSecond ?? '?'} readings/s (${fmtN(fig(v, (x) => x.normal?.deliveriesPerSecond).median)} deliveries/s)`, measured: normalP99, unit: 'ms', target: '≤ 100 ms', met: v.length > 0 ? (normalP99.median ?? Infinity) <= 100 : null, issue: 7 });
  out.push({
    figure: `live: the same with 10 slow viewers at the display for the whole phase (fewest present: ${v.map((x) => x.withSlow?.slowViewersAtDisplay?.atDisplayMin ?? '?').join(', ')}; reconnects: ${v.map((x) => Math.max(0, (x.withSlow?.slowViewersAtDisplay?.opened ?? 10) - 10)).join(', ')}); p99 change ${formatRepeated({ ...change, median: change.median === null ? null : Math.round(change.median * 1000) / 10, min: change.min === null ? null : Math.round(change.min * 1000) / 10, max: change.max === null ? null : Math.round(change.max * 1000) / 10 }, 1)} %, noise floor (|change| between the two phases without them) ${formatRepeated({ ...noise, median: noise.median === null ? null : Math.round(noise.median * 1000) / 10, min: noise.min === null ? null : Math.round(noise.min * 1000) / 10, max: noise.max === null ? null : Math.round(noise.max * 1000) / 10 }, 1)} %`,
    measured: slowP99,
    unit: 'ms',
    baseline: { name: 'without slow viewers', value: normalP99 },
    target: `p99 changes < 10 %, or by no more than the noise floor where that is larger (here ${Number.isFinite(threshold) ? `${Math.round(threshold * 1000) / 10} %` : '?'}${judgeable ? '' : `: over ${MAX_NOISE_FLOOR * 100} %, **too noisy to judge**`})`,
    met: v.length > 0 && judgeable ? (change.median ?? Infinity) < threshold && slowPresent : null,
    issue: 7,
  });

  // ---- simulator (#4) ----
  const m = ok(r.sim?.runs);
  const simCpu = fig(m, (x) => x.simulator?.cpuCores);
  const simRss = fig(m, (x) => x.simulator?.peakRssMiB);
  out.push({ figure: `simulator CPU, ${m[0]?.devices ?? '?'} devices at 1 reading/10 s`, measured: simCpu, unit: 'cores', target: '< 1 core', met: m.length > 0 ? (simCpu.median ?? Infinity) < 1 : null, issue: 4 });
  out.push({ figure: 'simulator peak RSS, the same runs', measured: simRss, unit: 'MiB', target: '< 1536 MiB', met: m.length > 0 ? (simRss.median ?? Infinity) < 1536 : null, issue: 4 });
  // ---- alerts (#19) ----
  const al = ok(r.alerts?.runs);
  const crossingP99 = fig(al, (x) => x.latency?.ms?.p99);
  const perRate = (al[0]?.throughput ?? []) as Json[];
  const rateText = perRate
    .map((t, i) => {
      const pick = (f: (x: Json) => unknown) => fig(al, (x) => f(x.throughput?.[i] ?? {}));
      const keptUp = al.map((x) => (x.throughput?.[i]?.keptUp === true ? 'yes' : 'no')).join('/');
      return `${fmtN(t.offeredPerSecond)}/s: kept up ${keptUp}, ${formatRepeated(pick((x) => x.evaluationsPerSecond))} evaluations/s, ${formatRepeated(pick((x) => x.cpuMicrosPerReading), 1)} CPU µs/reading, probe p99 ${formatRepeated(pick((x) => x.probeLatencyMs?.p99))} ms, RSS ${formatRepeated(pick((x) => x.rssMiB?.alertsPeak))} MiB`;
    })
    .join('; ');
  out.push({
    figure: `alerts: publish→webhook p99 of a threshold crossing through broker, ingest and alerts (${fmtN(fig(al, (x) => x.latency?.crossings).median)} crossings a run; p50 ${formatRepeated(fig(al, (x) => x.latency?.ms?.p50), 1)} ms). The verified feed from ${fmtN(al[0]?.devices)} devices, 5 rules each: ${rateText || '?'}`,
    measured: crossingP99,
    unit: 'ms',
    target: 'fires within 2 s',
    met: al.length > 0 ? al.every((x) => x.latency?.timedOut === 0) && (crossingP99.median ?? Infinity) <= 2000 : null,
    issue: 19,
  });
  // A figure that was not measured is not judged.
  return out.map((row) => (row.measured.median === null ? { ...row, met: null } : row));
}

function markdown(table: Row[], meta: Json, results: Results, stem: string): string {
  const fmt = (v: number | null) => (v === null ? '—' : v.toLocaleString('en-US', { maximumFractionDigits: 3 }));
  const cell = (x: Repeated) => formatRepeated(x, 2);
  const lines = [
    '# Benchmark report',
    '',
    `Run ${meta.finishedAt} on ${meta.machine.cores} cores (${meta.machine.cpu}), Node ${meta.machine.node}; load average before ${meta.loadavgBefore.join(' / ')}.${meta.quick ? ' **Quick run: not for quoting.**' : ''}`,
    `Everything (brokers, ingest, display, influxd, load generators, viewers) runs on this one machine. Each figure is the median of ${meta.repeats ?? 1} run${(meta.repeats ?? 1) === 1 ? '' : 's'}, with the range in brackets; the baseline comes from the same runs. Produced by \`npm run bench\`; the raw JSON of every script is in \`${stem}.json\`.`,
    '',
    '| issue | figure | measured | baseline (same run) | ratio | target | met |',
    '|---|---|---|---|---|---|---|',
    ...table.map((r) => {
      const ratio = r.ratio !== undefined ? r.ratio : r.baseline ? ratioOf(r.measured, r.baseline.value) : null;
      return `| #${r.issue} | ${r.figure} | ${cell(r.measured)} ${r.unit} | ${r.baseline ? `${r.baseline.name}: ${cell(r.baseline.value)}` : ''} | ${r.baseline ? fmt(ratio) : ''} | ${r.target} | ${r.met === null ? '' : r.met ? 'yes' : '**no**'} |`;
    }),
    '',
    ...whereTheTimeGoes(results, table, meta.machine.cores),
  ];
  return lines.join('\n');
}

/**
 * The run's own evidence of what limits it: the machine's load before each script, and for the live
 * bench (every process of the pipeline on the same 2 cores) the CPU, GC pauses and per-second p99 of
 * each process. The profiles behind it, and how to take them, are in bench/PROFILE.md.
 */
function whereTheTimeGoes(r: Results, table: Row[], cores: number): string[] {
  const lines = ['## Where the time goes', ''];
  const unmet = table.filter((row) => row.met === false);
  lines.push(unmet.length === 0 ? 'Every target was met in this run.' : `Not met in this run: ${unmet.map((row) => `#${row.issue} ${row.figure.split(' (')[0]}`).join('; ')}.`, '');
  const failed = Object.entries(r).filter(([, x]) => x.runs.some((run) => run.failed === true)).map(([name]) => name);
  if (failed.length > 0) lines.push(`**Scripts that failed in at least one run** (their rows use the other runs, or stay unjudged): ${failed.join(', ')}.`, '');
  lines.push(`Load average (1 min) before each script: ${Object.entries(r).map(([name, x]) => `${name} ${x.loadavgBefore.map((l) => l[0] ?? '?').join('/')}`).join(', ')}.`, '');
  const live: Json = ok(r.live?.runs)[0] ?? {};
  const normal = live.processesPerPhase?.normal as Record<string, { cores: number; rssMiB: number; gcPausedShare: number; gcPausesOver25ms: number }> | undefined;
  if (normal !== undefined) {
    const total = Object.values(normal).reduce((t, p) => t + p.cores, 0);
    lines.push(
      `Live bench (its first run), phase without slow viewers: the processes used ${total.toFixed(2)} of ${cores} cores between them.`,
      '',
      '| process | CPU cores | RSS MiB | time paused in GC | GC pauses > 25 ms |',
      '|---|---|---|---|---|',
      ...Object.entries(normal).map(([name, p]) => `| ${name} | ${p.cores} | ${p.rssMiB} | ${(p.gcPausedShare * 100).toFixed(1)} % | ${p.gcPausesOver25ms} |`),
      '',
    );
    const bySecond = (live.p99BySecond?.normal ?? []).filter((v: number | null) => v !== null) as number[];
    if (bySecond.length > 0) lines.push(`p99 of each second in that phase ranged from ${Math.min(...bySecond)} to ${Math.max(...bySecond)} ms; the two phases without slow viewers differed by ${((live.p99ChangeAfterVsBefore ?? NaN) * 100).toFixed(1)} % from each other (the noise floor of the slow-viewer comparison).`, '');
  }
  for (const c of [ok(r.capacity?.runs)[0], ok(r.capacityEmbedded?.runs)[0]]) {
    if (c === undefined) continue;
    lines.push(`Capacity ladder, ${c.store} (every rung of every search):`, '', '| search | offered/s | passed | stored/s | p99 ms | lost | CPU µs/reading broker | ingest | why it failed |', '|---|---|---|---|---|---|---|---|---|');
    (c.searches as Json[]).forEach((search, k) => {
      for (const rung of search.rungs as Json[]) {
        lines.push(`| ${k + 1} | ${fmtN(rung.rate)} | ${rung.passed ? 'yes' : 'no'} | ${fmtN(rung.storedPerSecond)} | ${fmtN(rung.p99Ms)} | ${rung.lost ?? '?'} | ${fmtN(rung.cpuMicrosPerReading?.broker, 1)} | ${fmtN(rung.cpuMicrosPerReading?.ingest, 1)} | ${(rung.reasons as string[]).join('; ')} |`);
      }
    });
    lines.push('');
  }
  return lines;
}

const fromIndex = process.argv.indexOf('--from');
let results: Results = {};
let meta: Json = { finishedAt: new Date().toISOString(), machine: machine(), loadavgBefore: loadavg().map((x) => Math.round(x * 100) / 100), quick, repeats };
if (fromIndex >= 0) {
  const saved = JSON.parse(await readFile(process.argv[fromIndex + 1]!, 'utf8')) as Json;
  // Results saved before runs were repeated hold one script's JSON per name.
  results = Object.fromEntries(Object.entries(saved.results as Record<string, Json>).map(([name, x]) => [name, Array.isArray(x.runs) ? (x as Results[string]) : { runs: [x], loadavgBefore: [x.loadavgBefore ?? []] }]));
  meta = { finishedAt: saved.finishedAt, machine: saved.machine, loadavgBefore: saved.loadavgBefore, quick: saved.quick, repeats: saved.repeats ?? 1 };
} else {
  for (const run of RUNS.filter((x) => only.length === 0 || only.includes(x.name))) {
    const times = run.inside === undefined ? repeats : 1;
    const entry: Results[string] = { runs: [], loadavgBefore: [] };
    for (let k = 0; k < times; k++) {
      const args = run.inside === undefined ? run.args : [...run.args, run.inside, String(repeats)];
      process.stderr.write(`bench: ${run.name}${times > 1 ? ` ${k + 1}/${times}` : ''} (${run.script} ${args.join(' ')})\n`);
      entry.loadavgBefore.push(loadavg().map((x) => Math.round(x * 100) / 100));
      entry.runs.push(await runScript(run, args));
    }
    results[run.name] = entry;
  }
  meta.finishedAt = new Date().toISOString();
}
const table = rows(results);
// Re-rendered results go back where they came from; a quick or partial (--only) run is written beside
// the full report (quick.*, partial.*), never over it.
const dir = fromIndex >= 0 ? dirname(resolve(process.argv[fromIndex + 1]!)) : join(root, 'bench', 'results');
const stem = fromIndex >= 0 ? basename(process.argv[fromIndex + 1]!, '.json') : quick ? 'quick' : only.length > 0 ? 'partial' : 'latest';
await mkdir(dir, { recursive: true });
await writeFile(join(dir, `${stem}.json`), `${JSON.stringify({ ...meta, table, results }, null, 2)}\n`);
await writeFile(join(dir, `${stem}.md`), markdown(table, meta, results, stem));
process.stdout.write(markdown(table, meta, results, stem));
