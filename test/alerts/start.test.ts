/**
 * `sensorpipe start` as a newcomer runs it: the demo rules are written to the data folder, the alerts
 * component runs beside the rest, and demo rules really fire: the hand-driven demo device, which sends
 * nothing until the user does, goes silent; the demo device that sends bad signatures trips the
 * rejections rule. Ctrl-C ends it all.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import type { AlertEvent } from '../../core/alerts.ts';
import { CLI_PATH, START_ON_FREE_PORTS } from '../../harness/cli.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
let child: ChildProcess | undefined;
let dir: TempDir | undefined;

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    const exited = new Promise((resolve) => child!.once('exit', resolve));
    child.kill('SIGINT');
    await exited;
  }
  await dir?.remove();
});

it('sensorpipe start writes demo rules, and they fire', async () => {
  dir = await tempDir('sensorpipe-alerts-start-');
  child = spawn(process.execPath, [CLI_PATH, 'start'], {
    cwd: REPO,
    env: { ...process.env, SENSORPIPE_DATA_DIR: dir.path, ...START_ON_FREE_PORTS, SENSORPIPE_SIM_DEVICES: '4', SENSORPIPE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout!.resume();
  let alertsUrl: string | undefined;
  await waitFor(() => {
    if (child!.exitCode !== null) throw new Error(`sensorpipe start exited\n${stderr.slice(-4000)}`);
    const line = stderr.split('\n').find((l) => l.includes('"sensorpipe is running"'));
    alertsUrl = line === undefined ? undefined : (JSON.parse(line) as { endpoints: { alerts: string } }).endpoints.alerts;
    return alertsUrl !== undefined;
  }, 'sensorpipe start to run', 30_000);

  expect(await readFile(join(dir.path, 'alert-rules.yaml'), 'utf8')).toContain('kind: rejections');
  const history = async (query: string) => ((await (await fetch(`${alertsUrl}/history?${query}`)).json()) as { events: AlertEvent[] }).events;
  await waitFor(async () => (await history('device=sim-0003&rule=bad-signatures')).some((e) => e.state === 'firing'), 'the bad-signatures rule to fire for sim-0003', 60_000, 500);
  await waitFor(async () => (await history('device=my-device&rule=silent')).some((e) => e.state === 'firing'), 'my-device to be silent', 60_000, 500);
  const firing = ((await (await fetch(alertsUrl!)).json()) as { firing: { device: string; rule: string }[] }).firing;
  expect(firing).toContainEqual(expect.objectContaining({ device: 'my-device', rule: 'silent' }));

  // Ctrl-C still ends everything, the alerts component included.
  const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
  child.kill('SIGINT');
  const code = await Promise.race([exited, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 15_000).unref())]);
  expect(code, stderr.slice(-2000)).toBe(0);
}, 120_000);
