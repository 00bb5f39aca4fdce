/**
 * A device's own alert rules set through `sensorpipe devices` (the same service as the admin API):
 * stored in its registry metadata, a clause that does not parse refused at the door, removable.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadRegistry } from '../../core/registry.ts';
import { runCli } from '../../harness/cli.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
let env: Record<string, string>;
beforeAll(async () => {
  dir = await tempDir('sensorpipe-alerts-meta-');
  env = { SENSORPIPE_DATA_DIR: dir.path, SENSORPIPE_LOG_LEVEL: 'silent' };
});
afterAll(async () => {
  await dir.remove();
});

it('devices add/update --alerts sets the rules; a bad clause is DEVICE_INVALID; --unset alerts removes them', async () => {
  const registryPath = join(dir.path, 'registry.json');
  expect((await runCli(['devices', 'add', 'boiler-1', '--alerts', 'temperature > 80 clear 75; silent 5m'], { env })).code).toBe(0);
  expect((await loadRegistry(registryPath)).get('boiler-1')?.meta.alerts).toBe('temperature > 80 clear 75; silent 5m');

  const bad = await runCli(['devices', 'update', 'boiler-1', '--alerts', 'temperature >> 80'], { env });
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain('DEVICE_INVALID');
  expect(bad.stderr).toContain('temperature >> 80');
  expect((await loadRegistry(registryPath)).get('boiler-1')?.meta.alerts).toBe('temperature > 80 clear 75; silent 5m');

  expect((await runCli(['devices', 'update', 'boiler-1', '--alerts', 'pressure < 1'], { env })).code).toBe(0);
  expect((await loadRegistry(registryPath)).get('boiler-1')?.meta.alerts).toBe('pressure < 1');
  expect((await runCli(['devices', 'update', 'boiler-1', '--unset', 'alerts'], { env })).code).toBe(0);
  expect((await loadRegistry(registryPath)).get('boiler-1')?.meta).toEqual({});
}, 60_000);
