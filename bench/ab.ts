/**
 * Before/after in the same run: this checkout's product against an older revision's, driven by this
 * checkout's bench scripts, runs interleaved (before, after, before, after, …) so that a drift of the
 * machine hits both sides alike. Prints JSON: each figure's runs, medians and the after/before ratio.
 *
 *   npx tsx bench/ab.ts [--before ec1e355] [--repeats 3] [--quick]
 *                       [--scripts ingest,live] [--rates 10000] [--seconds 30] [--durable-queue off|on]
 *                       [--after REV]   (another revision as the "after" side, instead of this checkout)
 *
 * The default `--before` is the last commit before issue 15's changes (strict payload parsing, the
 * display's limits, the broker's accept gate); issue 15 asks that none of them slows the happy path.
 * Two paths are measured:
 *   ingest: bench/ingest.ts at 10,000 readings/s on InfluxDB (broker → ingest → store);
 *   live:   bench/live.ts (1,000 viewers at 5,000 readings/s), shorter phases than its own judged run.
 * In both, the broker's durable queue is off on the "after" side (SENSORPIPE_BROKER_WAL=off): the older
 * broker has none, and its cost (issue 14) is measured on its own by bench/broker.ts. `--durable-queue
 * on` keeps it on (the product as users run it, e.g. for issue 17's before/after). `--rates` runs the
 * ingest bench at each rate (`ingest@RATE` in the JSON); `--seconds` is its length.
 * The older revision is exported with `git archive` into a temporary folder and runs on this checkout's
 * node_modules (each of its dependencies is here at the same version; checked).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { argValue, machine, printJson, runBenchScript } from './lib.ts';
import { repeated } from './stats.ts';

const quick = process.argv.includes('--quick');
const before = argValue('before', 'ec1e355');
const repeats = Math.max(1, Number(argValue('repeats', quick ? '1' : '3')));
const root = new URL('..', import.meta.url).pathname;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- other scripts' JSON

const wanted = argValue('scripts', 'ingest,live').split(',');
const rates = argValue('rates', '10000').split(',').map(Number);
const ingestSeconds = argValue('seconds', quick ? '8' : '30');
const durableQueue = argValue('durable-queue', 'off');
if (durableQueue !== 'on' && durableQueue !== 'off') throw new Error('--durable-queue is on or off');

/** Each measured path: its bench command, and what it is judged on. */
const scripts: Record<string, { kind: 'ingest' | 'live'; args: string[] }> = {};
// The broker's catch-up after an overloaded run is not what is compared: a minute at most.
if (wanted.includes('ingest')) for (const rate of rates) scripts[`ingest@${rate}`] = { kind: 'ingest', args: ['bench/ingest.ts', '--store', 'influx', '--rate', String(rate), '--seconds', ingestSeconds, '--catch-up-max', '60'] };
if (wanted.includes('live')) scripts.live = { kind: 'live', args: ['bench/live.ts', ...(quick ? ['--clients', '100', '--seconds', '5', '--slow-seconds', '5'] : ['--seconds', '15', '--slow-seconds', '10'])] };

const figures: Record<'ingest' | 'live', Record<string, (run: Json) => unknown>> = {
  ingest: {
    storedPerSecond: (r) => r.storedPerSecond,
    publishToLiveP99Ms: (r) => r.publishToLiveMs?.p99,
    brokerCpuMicrosPerReading: (r) => r.cpuMicrosPerReading?.broker,
    ingestCpuMicrosPerReading: (r) => r.cpuMicrosPerReading?.ingest,
  },
  live: {
    viewerP99Ms: (r) => r.normal?.latencyMs?.p99,
    deliveriesPerSecond: (r) => r.normal?.deliveriesPerSecond,
    displayCpuCores: (r) => r.processesPerPhase?.normal?.display?.cores,
    brokerCpuCores: (r) => r.processesPerPhase?.normal?.broker?.cores,
    ingestCpuCores: (r) => r.processesPerPhase?.normal?.ingest?.cores,
  },
};

function run(args: string[]): Promise<Json> {
  // The durable queue off for every broker unless asked (the older one has none and ignores the variable).
  const [script, ...rest] = args;
  return runBenchScript(script!, rest, durableQueue === 'off' ? { env: { ...process.env, SENSORPIPE_BROKER_WAL: 'off' } } : {});
}

const after = argValue('after', '');
const revision = execFileSync('git', ['rev-parse', before], { cwd: root, encoding: 'utf8' }).trim();
const head = execFileSync('git', ['rev-parse', after === '' ? 'HEAD' : after], { cwd: root, encoding: 'utf8' }).trim();
// The older revision runs on this checkout's node_modules: each of its dependencies must be here, at its version.
const dependencies = (text: string): Record<string, string> => {
  const json = JSON.parse(text) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
  return { ...json.dependencies, ...json.devDependencies };
};
const current = dependencies(await readFile(join(root, 'package.json'), 'utf8'));
for (const rev of after === '' ? [revision] : [revision, head]) {
  for (const [name, version] of Object.entries(dependencies(execFileSync('git', ['show', `${rev}:package.json`], { cwd: root, encoding: 'utf8' })))) {
    if (current[name] !== version) throw new Error(`${rev} depends on ${name} ${version}, this checkout on ${current[name] ?? 'nothing'}: it would not run on the dependencies it was written for`);
  }
}
/** An exported copy of a revision, on this checkout's node_modules. */
async function exportRevision(rev: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sensorpipe-ab-'));
  execFileSync('sh', ['-c', `git archive ${rev} | tar -x -C ${dir}`], { cwd: root });
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}
const beforeRoot = await exportRevision(revision);
const afterRoot = after === '' ? undefined : await exportRevision(head);
try {

  const runs: Record<string, { before: Json[]; after: Json[] }> = {};
  for (const [name, script] of Object.entries(scripts)) {
    runs[name] = { before: [], after: [] };
    for (let k = 0; k < repeats; k++) {
      for (const side of ['before', 'after'] as const) {
        process.stderr.write(`ab: ${name} ${side} ${k + 1}/${repeats}\n`);
        const productRoot = side === 'before' ? beforeRoot : afterRoot;
        runs[name]![side].push(await run(productRoot === undefined ? script.args : [...script.args, '--product-root', productRoot]));
      }
    }
  }

  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const results: Json = {};
  for (const [name, script] of Object.entries(scripts)) {
    results[name] = {};
    for (const [figure, pick] of Object.entries(figures[script.kind])) {
      const b = repeated(runs[name]!.before.map((r) => (r.failed === true ? null : num(pick(r)))));
      const a = repeated(runs[name]!.after.map((r) => (r.failed === true ? null : num(pick(r)))));
      const ratio = a.median === null || b.median === null || b.median === 0 ? null : Math.round((a.median / b.median) * 1000) / 1000;
      results[name][figure] = { before: b, after: a, afterOverBefore: ratio };
    }
  }
  printJson({
    bench: 'ab',
    machine: machine(),
    before: { revision, asGiven: before },
    after: { revision: head, asGiven: after || 'this checkout', uncommittedChanges: after === '' && execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' }).trim() !== '' },
    repeats,
    quick,
    durableQueueAfter: durableQueue,
    scripts,
    results,
    failedRuns: Object.fromEntries(Object.entries(runs).map(([name, x]) => [name, { before: x.before.filter((r) => r.failed === true), after: x.after.filter((r) => r.failed === true) }])),
  });
} finally {
  await rm(beforeRoot, { recursive: true, force: true });
  if (afterRoot !== undefined) await rm(afterRoot, { recursive: true, force: true });
}
