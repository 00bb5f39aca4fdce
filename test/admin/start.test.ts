/**
 * `sensorpipe start` runs the admin API when SENSORPIPE_ADMIN_TOKEN is set (and only then), on the
 * registry the broker follows: a device added through it is in the registry, and the start-up line
 * names the admin URL. Every port is 0.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRegistry } from '../../core/registry.ts';
import { spawnCli, START_ON_FREE_PORTS, type CliProcess } from '../../harness/cli.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { TOKEN, call } from './helpers.ts';

const ANY_FREE_PORT = {
  ...START_ON_FREE_PORTS,
  SENSORPIPE_ADMIN_PORT: '0',
  SENSORPIPE_SIM_DEVICES: '1',
};

let dir: TempDir;
beforeAll(async () => {
  dir = await tempDir('sensorpipe-admin-start-');
});
afterAll(async () => {
  await dir?.remove();
});

function endpointsOf(started: CliProcess): Record<string, string> {
  const line = started.stderr().split('\n').find((l) => l.includes('"sensorpipe is running"'))!;
  return (JSON.parse(line) as { endpoints: Record<string, string> }).endpoints;
}

describe('sensorpipe start and the admin API', () => {
  it('serves it with a token, on the registry the broker follows', async () => {
    const dataDir = join(dir.path, 'with-token');
    const started = await spawnCli(['start'], { ...ANY_FREE_PORT, SENSORPIPE_DATA_DIR: dataDir, SENSORPIPE_ADMIN_TOKEN: TOKEN }, '"sensorpipe is running"', 90_000);
    try {
      const adminUrl = endpointsOf(started).admin;
      expect(adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/admin$/);
      const port = Number(new URL(adminUrl!).port);
      const list = await call(port, 'GET', '/admin/devices');
      expect(list.json().devices.map((d: { id: string }) => d.id)).toEqual(['my-device', 'sim-0000']);
      expect((await call(port, 'GET', '/admin/devices', { token: 'wrong-token-0000000000' })).status).toBe(401);
      const added = await call(port, 'POST', '/admin/devices', { body: { id: 'from-admin' } });
      expect(added.status, added.text).toBe(201);
      expect((await loadRegistry(join(dataDir, 'registry.json'))).get('from-admin')?.status).toBe('active');
      expect(started.stderr()).not.toContain(TOKEN);
    } finally {
      await started.stop('SIGTERM');
    }
    expect(started.child.exitCode).toBe(0);
  }, 120_000);

  it('does not serve it without a token', async () => {
    const started = await spawnCli(['start'], { ...ANY_FREE_PORT, SENSORPIPE_DATA_DIR: join(dir.path, 'without-token'), SENSORPIPE_ADMIN_TOKEN: '' }, '"sensorpipe is running"', 90_000);
    try {
      expect(endpointsOf(started)).not.toHaveProperty('admin');
      expect(started.stderr()).not.toContain('admin API listening');
    } finally {
      await started.stop('SIGTERM');
    }
  }, 120_000);
});
