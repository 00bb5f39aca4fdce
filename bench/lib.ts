/** Small helpers shared by the bench scripts: percentiles, CPU and memory of a process, JSON output. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { cpus } from 'node:os';
import { configSpecs, type OptionSpec } from '../core/config.ts';

export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export function summarize(samples: number[]): { count: number; p50: number | null; p99: number | null; max: number | null } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { count: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? null };
}

/** CPU seconds (user + system) and RSS of a process, from /proc (Linux). */
export async function processUsage(pid: number): Promise<{ cpuSeconds: number; rssBytes: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = 100; // USER_HZ on Linux
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / ticks;
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuSeconds, rssBytes: rssKb * 1024 };
}

/** CPU use of a process over an interval, as a fraction of one core. */
export async function cpuOver(pid: number, run: () => Promise<void>): Promise<{ cores: number; rssBytes: number }> {
  const before = await processUsage(pid);
  const started = process.hrtime.bigint();
  await run();
  const after = await processUsage(pid);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { cores: (after.cpuSeconds - before.cpuSeconds) / seconds, rssBytes: after.rssBytes };
}

export function machine(): { cores: number; cpu: string; node: string } {
  return { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version };
}

export function printJson(result: unknown): void {
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

export function argValue(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && process.argv[index + 1] !== undefined ? process.argv[index + 1]! : fallback;
}

/** The broker's option read from environment variable `env`, if this build has one. */
export function brokerOption(env: string): OptionSpec | undefined {
  return Object.values(configSpecs.broker as Record<string, OptionSpec>).find((spec) => spec.env === env);
}

/**
 * The environment that turns the broker's durable queue (its write-ahead log, SENSORPIPE_BROKER_WAL)
 * on or off. Unknown SENSORPIPE_* variables are ignored by the config parser, so when this build's
 * broker has no such option, `option` is false and nothing is set: a comparison "with against without"
 * would compare a broker with itself. The value is whichever spelling the option's schema accepts
 * (on/off, or true/false).
 */
export function brokerWalEnv(setting: 'on' | 'off' | undefined): { option: boolean; env: Record<string, string> } {
  const spec = brokerOption('SENSORPIPE_BROKER_WAL');
  if (spec === undefined || setting === undefined) return { option: spec !== undefined, env: {} };
  const spellings = setting === 'on' ? ['on', 'true', '1', 'yes'] : ['off', 'false', '0', 'no'];
  const value = spellings.find((text) => spec.schema.safeParse(text).success);
  if (value === undefined) throw new Error(`SENSORPIPE_BROKER_WAL accepts none of ${spellings.join(', ')}`);
  return { option: true, env: { SENSORPIPE_BROKER_WAL: value } };
}

/** The repository's root: every bench script runs from there. */
const ROOT = new URL('..', import.meta.url).pathname;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- another script's JSON

/**
 * Runs another bench script (`node --import tsx <script> …args` from the repository's root) and resolves
 * with the JSON it prints last, or `{ failed, exitCode, stderr }` (the end of its stderr) when it prints
 * none. `onStderr` sees its stderr as it comes (to pass a script's progress on).
 */
export function runBenchScript(script: string, args: string[], options: { env?: NodeJS.ProcessEnv; onStderr?: (chunk: Buffer) => void } = {}): Promise<Json> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: ROOT, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      err = (err + chunk.toString()).slice(-20_000);
      options.onStderr?.(chunk);
    });
    child.on('exit', (code) => {
      // The JSON is the last thing a script prints; anything before it is a child's stray output.
      const start = out.indexOf('\n{') >= 0 ? out.lastIndexOf('\n{\n') + 1 : out.indexOf('{');
      try {
        resolve(JSON.parse(out.slice(Math.max(0, start))) as Json);
      } catch {
        resolve({ failed: true, exitCode: code, stderr: err.slice(-2000) });
      }
    });
  });
}

/** SIGTERM, then SIGKILL if the child has not exited within `killAfterMs` (a product process flushes on SIGTERM). */
export function stopChild(child: ChildProcess, killAfterMs = 30_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  return exited.finally(() => clearTimeout(timer));
}

/** Resolves once something accepts TCP connections on the loopback port (tries every 50 ms for `timeoutMs`). */
export async function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
  for (let waited = 0; waited < timeoutMs; waited += 50) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => resolve(socket.destroy() !== undefined));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}
