/**
 * Start-up time and memory of `sensorpipe start`, run from the TypeScript sources through tsx (what
 * cli/bin.js did before `npm run build` existed, and still does without a current build) against the
 * compiled output (`node dist/cli/main.js`, what the Docker image and a built checkout run). Prints JSON.
 *
 *   npm run build && npx tsx bench/startup.ts [--repeats 3] [--settle-s 10] [--build-dir dist]
 *
 * Each run: an empty data folder, every port 0; start-up is the time from spawn to the "sensorpipe is
 * running" line on stdout; RSS is the process's VmRSS `--settle-s` seconds later (the demo fleet running),
 * then SIGINT. The variants alternate run by run so that both see the same machine; medians are reported
 * with every sample. Also the cost of cli/bin.js deciding whether the build is current (a walk of the
 * product's sources), which the compiled path pays on top when started through cli/bin.js.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { currentCompiledEntry, ROOT } from '../cli/compiled.js';
import { START_ON_FREE_PORTS } from '../harness/cli.ts';
import { argValue, machine, printJson, processUsage } from './lib.ts';

const repeats = Math.max(1, Number(argValue('repeats', '3')));
const settleMs = Number(argValue('settle-s', '10')) * 1000;
const buildDir = resolve(ROOT, argValue('build-dir', 'dist'));

const compiled = join(buildDir, 'cli', 'main.js');
if (!existsSync(compiled)) {
  process.stderr.write(`bench/startup: no build in ${buildDir}: run \`npm run build\` (or tsx build.ts --out-dir …) first\n`);
  process.exit(2);
}
// A build older than a source still runs (and is measured), but the two variants then differ by more than
// the compilation: the JSON says so.
const buildCurrent = currentCompiledEntry(buildDir) !== undefined;
// Exactly the old cli/bin.js: register tsx's loader, then import cli/main.ts.
const tsxApi = import.meta.resolve('tsx/esm/api');
const viaTsx = ['--import', `data:text/javascript,import{register}from${JSON.stringify(tsxApi)};register();`, join(ROOT, 'cli', 'main.ts')];
const variants: Record<string, string[]> = { tsx: viaTsx, compiled: [compiled] };


async function measure(args: string[]): Promise<{ startupMs: number; rssMiB: number }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sensorpipe-bench-startup-'));
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [...args, 'start'], {
    cwd: ROOT,
    env: { ...process.env, ...START_ON_FREE_PORTS, SENSORPIPE_DATA_DIR: dataDir, SENSORPIPE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  try {
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    const startupMs = await new Promise<number>((done, fail) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes('sensorpipe is running')) done(Number(process.hrtime.bigint() - started) / 1e6);
      });
      void exited.then((code) => fail(new Error(`sensorpipe start exited (${code}) before it was running: ${stderr}`)));
      setTimeout(() => fail(new Error(`sensorpipe start not running after 60 s: ${stderr}`)), 60_000).unref();
    });
    await new Promise((done) => setTimeout(done, settleMs));
    const { rssBytes } = await processUsage(child.pid!);
    return { startupMs: Math.round(startupMs), rssMiB: Math.round((rssBytes / 2 ** 20) * 10) / 10 };
  } finally {
    child.kill('SIGINT');
    await exited;
    await rm(dataDir, { recursive: true, force: true });
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const samples: Record<string, { startupMs: number; rssMiB: number }[]> = { tsx: [], compiled: [] };
for (let run = 0; run < repeats; run++) {
  for (const [name, args] of Object.entries(variants)) samples[name]!.push(await measure(args));
}
const freshnessCheckMs: number[] = [];
for (let run = 0; run < 5; run++) {
  const t0 = process.hrtime.bigint();
  currentCompiledEntry(buildDir);
  freshnessCheckMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
}

printJson({
  bench: 'startup',
  machine: machine(),
  repeats,
  settleSeconds: settleMs / 1000,
  compiledEntry: pathToFileURL(compiled).href,
  buildCurrent,
  results: Object.fromEntries(
    Object.entries(samples).map(([name, runs]) => [
      name,
      { startupMsMedian: median(runs.map((r) => r.startupMs)), rssMiBMedian: median(runs.map((r) => r.rssMiB)), runs },
    ]),
  ),
  binJsFreshnessCheckMsMedian: Math.round(median(freshnessCheckMs) * 100) / 100,
});
