/**
 * Ingest's view of the registry follows the file, and stopping ingest does not stop the other watchers
 * of the same file: in `sensorpipe start` the broker (revocations) and the display watch it too.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.ts';
import { watchRegistry } from '../../core/registry-watch.ts';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { RegistrySource } from '../../ingest/registry-source.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const logger = createLogger({ level: 'silent' });
let dir: TempDir;
let path: string;

beforeEach(async () => {
  dir = await tempDir();
  path = join(dir.path, 'registry.json');
  await saveRegistry(path, registryOf('dev-a'));
});
afterEach(async () => {
  await dir.remove();
});

function registryOf(...ids: string[]): Registry {
  const registry = new Registry();
  for (const id of ids) registry.add(id);
  return registry;
}

describe("ingest's registry source", () => {
  it('closing it leaves another watcher of the same file (the broker in `sensorpipe start`) following the file', async () => {
    const brokerSaw: string[][] = [];
    const broker = watchRegistry(path, (registry) => brokerSaw.push(registry.list().map((d) => d.id)), { intervalMs: 20 });
    const source = await RegistrySource.open(path, logger, 20);
    try {
      source.close();
      await saveRegistry(path, registryOf('dev-a', 'revoked-later'));
      await waitFor(() => brokerSaw.some((ids) => ids.includes('revoked-later')), 'the broker to see the change after ingest stopped watching', 5_000);
    } finally {
      broker.close();
    }
  });

  it('follows the file, and keeps the last good registry while the file cannot be parsed', async () => {
    const source = await RegistrySource.open(path, logger, 20);
    try {
      expect(source.registry.get('dev-a')).toBeDefined();
      await saveRegistry(path, registryOf('dev-a', 'dev-b'));
      await waitFor(() => source.registry.get('dev-b') !== undefined, 'dev-b', 5_000);
      await writeFile(path, '{ not json');
      await source.reload();
      expect(source.registry.get('dev-b')).toBeDefined();
    } finally {
      source.close();
    }
  });

  it('refuses to open on a registry it cannot load', async () => {
    await writeFile(path, '{ not json');
    await expect(RegistrySource.open(path, logger, 20)).rejects.toThrow();
  });
});
