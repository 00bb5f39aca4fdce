/**
 * `npm run bench`: runs every bench/ script one after another (never two at once: they share 2 cores),
 * then writes bench/results/latest.json (every script's whole JSON) and bench/results/latest.md (one
 * table: each figure beside its baseline measured in the same run, the ratio, the target from its issue,
 * and whether it was met).
 *
 *   npm run bench [-- --quick]      (--quick: short runs, to check the scripts, not to quote)
 *   npm run bench -- --from bench/results/latest.json   (only re-render the table from saved results)
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { machine } from './lib.ts';

const quick = process.argv.includes('--quick');
const root = new URL('..', import.meta.url).pathname;

interface Run { name: string; script: string; args: string[] }

const RUNS: Run[] = [
  { name: 'broker', script: 'broker.ts', args: quick ? ['--seconds', '2', '--idle', '1000'] : ['--seconds', '10', '--idle', '10000'] },
  { name: 'store', script: 'store.ts', args: quick ? ['--seconds', '3600', '--runs', '3', '--reps', '1'] : [] },
  { name: 'ingestInflux', script: 'ingest.ts', args: ['--store', 'influx', '--rate', '10000', '--seconds', quick ? '5' : '60'] },
  { name: 'ingestInfluxPassthrough', script: 'ingest.ts', args: ['--store', 'influx', '--rate', '10000', '--seconds', quick ? '5' : '60', '--ingest', 'passthrough'] },
  { name: 'ingestEmbedded', script: 'ingest.ts', args: ['--store', 'embedded', '--rate', '10000', '--seconds', quick ? '5' : '60'] },
  { name: 'ingestEmbeddedPassthrough', script: 'ingest.ts', args: ['--store', 'embedded', '--rate', '10000', '--seconds', quick ? '5' : '60', '--ingest', 'passthrough'] },
  { name: 'ingestLatency', script: 'ingest.ts', args: ['--store', 'influx', '--rate', '5000', '--seconds', quick ? '5' : '60'] },
  { name: 'ingestLatencyPassthrough', script: 'ingest.ts', args: ['--store', 'influx', '--rate', '5000', '--seconds', quick ? '5' : '60', '--ingest', 'passthrough'] },
  { name: 'live', script: 'live.ts', args: quick ? ['--clients', '100', '--seconds', '5', '--slow-seconds', '5'] : [] },
  { name: 'sim', script: 'sim.ts', args: quick ? ['--devices', '500', '--seconds', '10'] : ['--seconds', '60'] },
];

function runScript(run: Run): Promise<unknown> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join('bench', run.script), ...run.args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('exit', (code) => {
      // The JSON is the last thing a script prints; anything before it is a child's stray output.
      const start = out.indexOf('\n{') >= 0 ? out.lastIndexOf('\n{\n') + 1 : out.indexOf('{');
      try {
        resolve(JSON.parse(out.slice(Math.max(0, start))));
      } catch {
        resolve({ failed: true, exitCode: code, stderr: err.slice(-2000) });
      }
    });
  });
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- reading other scripts' JSON

interface Row { figure: string; measured: number | null; unit: string; baseline?: { name: string; value: number | null }; target: string; met: boolean | null; issue: number }

const ratio = (a: number | null, b: number | null | undefined) => (a === null || b === null || b === undefined || b === 0 ? null : Math.round((a / b) * 1000) / 1000);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function rows(r: Record<string, Json>): Row[] {
  const out: Row[] = [];
  const b = r.broker;
  for (const qos of ['qos0', 'qos1'] as const) {
    const t = b?.throughput?.[qos];
    out.push({ figure: `broker ${qos.toUpperCase()} delivered msg/s (100 publishers, 1 subscriber, auth+ACL+limits on)`, measured: num(t?.oursPerSecond), unit: 'msg/s', baseline: { name: 'bare aedes', value: num(t?.bareAedesPerSecond) }, target: '≥ 90% of bare aedes', met: t ? t.oursVsBareAedes >= 0.9 : null, issue: 3 });
    out.push({ figure: `broker ${qos.toUpperCase()} vs Debian Mosquitto`, measured: num(t?.oursPerSecond), unit: 'msg/s', baseline: { name: 'Mosquitto', value: num(t?.mosquittoPerSecond) }, target: '(reference)', met: null, issue: 3 });
  }
  const idle = b?.idleConnections;
  out.push({ figure: `broker RSS with ${idle?.requested ?? '?'} idle authenticated devices (${idle?.accepted ?? '?'} accepted)`, measured: num(idle?.brokerRssMiB), unit: 'MiB', target: '< 1024 MiB for 10,000', met: idle ? idle.withinTarget === true : null, issue: 3 });

  const s = r.store;
  const w = s?.write?.reading4;
  out.push({ figure: 'store: InfluxDB adapter write (batches of 5,000, median)', measured: num(w?.influxdbAdapter?.median), unit: 'points/s', baseline: { name: 'raw line protocol over HTTP', value: num(w?.influxdbRawLineProtocol?.median) }, target: '≥ 150,000 points/s', met: w ? w.influxdbAdapter.median >= 150_000 : null, issue: 5 });
  out.push({ figure: 'store: embedded adapter write (batches of 5,000, median)', measured: num(w?.embeddedAdapter?.median), unit: 'points/s', baseline: { name: 'raw line protocol into influxd', value: num(w?.influxdbRawLineProtocol?.median) }, target: '≥ 300,000 points/s', met: w ? w.embeddedAdapter.median >= 300_000 : null, issue: 5 });
  out.push({ figure: 'store: 24 h of 1 s data downsampled to 1,000 points, InfluxDB (p50)', measured: num(s?.query?.influxdbOneSeries?.ms?.p50), unit: 'ms', target: '≤ 100 ms', met: s?.query ? s.query.influxdbOneSeries.ms.p50 <= 100 : null, issue: 5 });
  out.push({ figure: 'store: the same query, embedded (p50)', measured: num(s?.query?.embeddedOneSeries?.ms?.p50), unit: 'ms', target: '≤ 50 ms', met: s?.query ? s.query.embeddedOneSeries.ms.p50 <= 50 : null, issue: 5 });

  for (const [name, label] of [['ingestInflux', 'InfluxDB'], ['ingestEmbedded', 'embedded']] as const) {
    const i = r[name];
    const p = r[`${name}Passthrough`];
    out.push({ figure: `ingest sustained readings/s at 10,000 offered, QoS 1, signatures on, ${label} (lost: ${i?.lost ?? '?'})`, measured: num(i?.sustainedReadingsPerSecond), unit: 'readings/s', baseline: { name: 'verification-free pass-through', value: num(p?.sustainedReadingsPerSecond) }, target: '≥ 10,000/s with 0 lost', met: i ? i.sustainedReadingsPerSecond >= 9_900 && i.lost === 0 : null, issue: 6 });
  }
  const l = r.ingestLatency;
  const lp = r.ingestLatencyPassthrough;
  out.push({ figure: 'ingest publish→live-feed p99 at 5,000 readings/s (InfluxDB)', measured: num(l?.publishToLiveMs?.p99), unit: 'ms', baseline: { name: 'verification-free pass-through', value: num(lp?.publishToLiveMs?.p99) }, target: '≤ 100 ms', met: l ? l.publishToLiveMs.p99 <= 100 : null, issue: 6 });

  const v = r.live;
  out.push({ figure: `live: publish→viewer p99, ${v?.viewers ?? '?'} viewers, ${v?.offeredReadingsPerSecond ?? '?'} readings/s (${v?.normal?.deliveriesPerSecond ?? '?'} deliveries/s)`, measured: num(v?.normal?.latencyMs?.p99), unit: 'ms', target: '≤ 100 ms', met: v?.normal ? v.normal.latencyMs.p99 <= 100 : null, issue: 7 });
  out.push({ figure: 'live: the same with 10 slow viewers added', measured: num(v?.withSlow?.latencyMs?.p99), unit: 'ms', baseline: { name: 'without slow viewers', value: num(v?.normal?.latencyMs?.p99) }, target: 'p99 changes < 10%', met: v?.withSlow ? v.p99ChangeWithSlow < 0.1 : null, issue: 7 });

  const m = r.sim;
  out.push({ figure: `simulator CPU, ${m?.devices ?? '?'} devices at 1 reading/10 s`, measured: num(m?.simulator?.cpuCores), unit: 'cores', target: '< 1 core', met: m?.simulator ? m.simulator.cpuCores < 1 : null, issue: 4 });
  out.push({ figure: 'simulator peak RSS, the same run', measured: num(m?.simulator?.peakRssMiB), unit: 'MiB', target: '< 1536 MiB', met: m?.simulator ? m.simulator.peakRssMiB < 1536 : null, issue: 4 });
  return out;
}

function markdown(table: Row[], meta: Json, results: Record<string, Json>): string {
  const fmt = (v: number | null) => (v === null ? '—' : v.toLocaleString('en-US', { maximumFractionDigits: 3 }));
  const lines = [
    '# Benchmark report',
    '',
    `Run ${meta.finishedAt} on ${meta.machine.cores} cores (${meta.machine.cpu}), Node ${meta.machine.node}; load average before ${meta.loadavgBefore.join(' / ')}.${quick ? ' **Quick run: not for quoting.**' : ''}`,
    'Everything (brokers, ingest, display, influxd, load generators, viewers) runs on this one machine. Produced by `npm run bench`; the raw JSON of every script is in `latest.json`.',
    '',
    '| issue | figure | measured | baseline (same run) | ratio | target | met |',
    '|---|---|---|---|---|---|---|',
    ...table.map((r) => `| #${r.issue} | ${r.figure} | ${fmt(r.measured)} ${r.unit} | ${r.baseline ? `${r.baseline.name}: ${fmt(r.baseline.value)}` : ''} | ${r.baseline ? fmt(ratio(r.measured, r.baseline.value)) : ''} | ${r.target} | ${r.met === null ? '' : r.met ? 'yes' : '**no**'} |`),
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
function whereTheTimeGoes(r: Record<string, Json>, table: Row[], cores: number): string[] {
  const lines = ['## Where the time goes', ''];
  const unmet = table.filter((row) => row.met === false);
  lines.push(unmet.length === 0 ? 'Every target was met in this run.' : `Not met in this run: ${unmet.map((row) => `#${row.issue} ${row.figure}`).join('; ')}.`, '');
  lines.push(`Load average (1 min) before each script: ${Object.entries(r).map(([name, json]) => `${name} ${json.loadavgBefore?.[0] ?? '?'}`).join(', ')}.`, '');
  const live: Json = r.live ?? {};
  const normal = live.processesPerPhase?.normal as Record<string, { cores: number; rssMiB: number; gcPausedShare: number; gcPausesOver25ms: number }> | undefined;
  if (normal !== undefined) {
    const total = Object.values(normal).reduce((t, p) => t + p.cores, 0);
    lines.push(
      `Live bench, phase without slow viewers: the processes used ${total.toFixed(2)} of ${cores} cores between them.`,
      '',
      '| process | CPU cores | RSS MiB | time paused in GC | GC pauses > 25 ms |',
      '|---|---|---|---|---|',
      ...Object.entries(normal).map(([name, p]) => `| ${name} | ${p.cores} | ${p.rssMiB} | ${(p.gcPausedShare * 100).toFixed(1)} % | ${p.gcPausesOver25ms} |`),
      '',
    );
    const bySecond = (live.p99BySecond?.normal ?? []).filter((v: number | null) => v !== null) as number[];
    if (bySecond.length > 0) lines.push(`p99 of each second in that phase ranged from ${Math.min(...bySecond)} to ${Math.max(...bySecond)} ms; the two phases without slow viewers differed by ${((live.p99ChangeAfterVsBefore ?? NaN) * 100).toFixed(1)} % from each other (the noise floor of the slow-viewer comparison).`, '');
  }
  return lines;
}

const fromIndex = process.argv.indexOf('--from');
let results: Record<string, Json> = {};
let meta = { finishedAt: new Date().toISOString(), machine: machine(), loadavgBefore: loadavg().map((x) => Math.round(x * 100) / 100), quick };
if (fromIndex >= 0) {
  const saved = JSON.parse(await readFile(process.argv[fromIndex + 1]!, 'utf8')) as Json;
  results = saved.results;
  meta = { finishedAt: saved.finishedAt, machine: saved.machine, loadavgBefore: saved.loadavgBefore, quick: saved.quick };
} else {
  for (const run of RUNS) {
    process.stderr.write(`bench: ${run.name} (${run.script} ${run.args.join(' ')})\n`);
    const loadavgBefore = loadavg().map((x) => Math.round(x * 100) / 100);
    results[run.name] = { ...((await runScript(run)) as Json), loadavgBefore };
  }
  meta.finishedAt = new Date().toISOString();
}
const table = rows(results);
const dir = join(root, 'bench', 'results');
await mkdir(dir, { recursive: true });
await writeFile(join(dir, 'latest.json'), `${JSON.stringify({ ...meta, table, results }, null, 2)}\n`);
await writeFile(join(dir, 'latest.md'), markdown(table, meta, results));
process.stdout.write(markdown(table, meta, results));
