/**
 * A real InfluxDB 1.x for tests: Debian's `influxd` in a temporary folder, on free loopback ports
 * (HTTP *and* the RPC bind address, which defaults to 8088), stopped and removed afterwards.
 * With INFLUX_URL set, that server is used instead and nothing is started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import { tempDir, type TempDir } from './tmp.ts';

export interface InfluxServer {
  url: string;
  /** True when the server was started here (tests may stop and restart it). */
  managed: boolean;
  /** The running influxd's process id, when it was started here (benchmarks sample its CPU). */
  readonly pid: number | undefined;
  /** Stops the process (keeps the data); `start` brings it back on the same port and data. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it and removes its data. */
  close(): Promise<void>;
}

const INFLUXD = process.env.INFLUXD_BIN ?? 'influxd';

function configText(dir: string, httpPort: number, rpcPort: number): string {
  return `reporting-enabled = false
bind-address = "127.0.0.1:${rpcPort}"
[meta]
  dir = "${join(dir, 'meta')}"
[data]
  dir = "${join(dir, 'data')}"
  wal-dir = "${join(dir, 'wal')}"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:${httpPort}"
  log-enabled = false
[logging]
  level = "warn"
`;
}

export async function waitForPing(url: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) });
      if (response.status === 204 || response.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`influxd at ${url} did not answer /ping within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function startInfluxd(): Promise<InfluxServer> {
  const external = process.env.INFLUX_URL;
  if (external) {
    await waitForPing(external);
    const noop = async () => {};
    return { url: external, managed: false, pid: undefined, stop: noop, start: noop, close: noop };
  }

  const dir: TempDir = await tempDir('sensorpipe-influxd-');
  const httpPort = await freePort();
  const rpcPort = await freePort();
  const configPath = join(dir.path, 'influxd.conf');
  await writeFile(configPath, configText(dir.path, httpPort, rpcPort));
  const url = `http://127.0.0.1:${httpPort}`;
  let child: ChildProcess | undefined;
  let output = '';

  const start = async (): Promise<void> => {
    const proc = spawn(INFLUXD, ['run', '-config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    proc.stdout?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
    proc.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
    const exited = new Promise<never>((_, reject) =>
      proc.once('exit', (code) => reject(new Error(`influxd exited with code ${code} before it was ready:\n${output}`))),
    );
    exited.catch(() => {});
    await Promise.race([waitForPing(url), exited]);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  await start();
  return {
    url,
    managed: true,
    get pid() {
      return child?.pid;
    },
    stop,
    start,
    close: async () => {
      await stop();
      await dir.remove();
    },
  };
}

/** Runs one InfluxQL statement (e.g. CREATE DATABASE) and returns the parsed JSON answer. */
export async function influxQuery(url: string, q: string, db?: string): Promise<unknown> {
  const params = new URLSearchParams({ q, epoch: 'ms' });
  if (db) params.set('db', db);
  const response = await fetch(`${url}/query`, { method: 'POST', body: params });
  if (!response.ok) throw new Error(`influx query failed: ${response.status} ${await response.text()}`);
  return response.json();
}
