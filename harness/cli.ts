/** Runs the real `sensorpipe` command (cli/bin.js) as a child process. */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './publisher.ts';

export const CLI_PATH = fileURLToPath(new URL('../cli/bin.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI_PATH, ...args],
      { env: { ...process.env, ...options.env }, cwd: options.cwd, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export interface CliProcess {
  child: ChildProcess;
  /** What it wrote to stderr so far (its JSON log). */
  stderr(): string;
  /** Sends `signal` and resolves once the process has exited. */
  stop(signal: NodeJS.Signals): Promise<void>;
}

/** Starts `sensorpipe …args` as a child process and resolves once its log shows `ready` (it fails if it exits first). */
export async function spawnCli(args: string[], env: Record<string, string>, ready: string, timeoutMs = 30_000): Promise<CliProcess> {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await waitFor(() => stderr.includes(ready) || child.exitCode !== null, `sensorpipe ${args.join(' ')} to log ${ready}`, timeoutMs);
  if (child.exitCode !== null) throw new Error(`sensorpipe ${args.join(' ')} exited: ${stderr.slice(-3000)}`);
  return {
    child,
    stderr: () => stderr,
    async stop(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill(signal);
      await exited;
    },
  };
}

/** `sensorpipe start`'s listeners on loopback, on ports the system picks (a test reads them from the output). */
export const START_ON_FREE_PORTS = {
  SENSORPIPE_MQTT_HOST: '127.0.0.1',
  SENSORPIPE_HTTP_HOST: '127.0.0.1',
  SENSORPIPE_MQTT_PORT: '0',
  SENSORPIPE_MQTT_WS_PORT: '0',
  SENSORPIPE_BROKER_METRICS_PORT: '0',
  SENSORPIPE_INGEST_METRICS_PORT: '0',
  SENSORPIPE_HTTP_PORT: '0',
  SENSORPIPE_ALERTS_PORT: '0',
} as const;
