/**
 * core/registry-watch.ts: every process that follows the registry file (broker, ingest, display — all
 * three in one `sensorpipe start`) keeps following it when another one stops watching.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { watchRegistry, type RegistryWatch } from '../../core/registry-watch.ts';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
let path: string;
const watches: RegistryWatch[] = [];

beforeEach(async () => {
  dir = await tempDir();
  path = join(dir.path, 'registry.json');
  await saveRegistry(path, registryOf('dev-a'));
});
afterEach(async () => {
  for (const watch of watches.splice(0)) watch.close();
  await dir.remove();
});

function registryOf(...ids: string[]): Registry {
  const registry = new Registry();
  for (const id of ids) registry.add(id);
  return registry;
}

/** A watcher that records the device ids of every registry it is handed. */
function follow(): { seen: string[][]; errors: Error[]; watch: RegistryWatch } {
  const seen: string[][] = [];
  const errors: Error[] = [];
  const watch = watchRegistry(path, (registry) => seen.push(registry.list().map((d) => d.id).sort()), { intervalMs: 20, onError: (err) => errors.push(err) });
  watches.push(watch);
  return { seen, errors, watch };
}

describe('watchRegistry', () => {
  it.each([
    ['the first', 0],
    ['the second', 1],
  ])('two watchers of one file: closing %s leaves the other following the file', async (_which, closed) => {
    const both = [follow(), follow()];
    both[closed]!.watch.close();
    const other = both[1 - closed]!;
    await saveRegistry(path, registryOf('dev-a', 'dev-b'));
    await waitFor(() => other.seen.some((ids) => ids.includes('dev-b')), 'the open watcher to see dev-b', 5_000);
    expect(both[closed]!.seen).toEqual([]);
  });

  it('keeps the last good registry when the file cannot be parsed, and reports it', async () => {
    const watcher = follow();
    await writeFile(path, '{ not json');
    await waitFor(() => watcher.errors.length > 0, 'the parse error to be reported', 5_000);
    expect(watcher.seen).toEqual([]);
    await saveRegistry(path, registryOf('dev-c'));
    await waitFor(() => watcher.seen.some((ids) => ids.includes('dev-c')), 'the repaired file to be loaded', 5_000);
  });
});
