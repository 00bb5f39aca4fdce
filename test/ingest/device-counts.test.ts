/**
 * ingest's per-device counts (ingest/device-counts.ts) on a real folder: what a tick writes and then
 * publishes (only what changed, never ahead of the file), a broker that is not reachable (kept for a
 * later tick), a file that cannot be written (not published, retried), and a counts file from outside
 * that is not one (counting begins anew instead of crashing or trusting it).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DeviceCountsMessage } from '../../core/schemas.ts';
import { COUNTS_FILE, DeviceCounts } from '../../ingest/device-counts.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir | undefined;
afterEach(async () => {
  await dir?.remove();
  dir = undefined;
});

let clock = 1_000;
const now = () => clock;
beforeEach(() => {
  clock = 1_000;
});

async function fileOf(path: string): Promise<DeviceCountsMessage[]> {
  return (JSON.parse(await readFile(join(path, COUNTS_FILE), 'utf8')) as { devices: DeviceCountsMessage[] }).devices;
}

describe('DeviceCounts', () => {
  it('writes, then publishes only the devices that changed, as written', async () => {
    dir = await tempDir();
    const counts = await DeviceCounts.open(dir.path, { now });
    counts.accepted('a', 3);
    counts.duplicates('a', 2);
    counts.rejected('a', 'READING_REPLAYED');
    counts.rejected('b', 'DEVICE_REVOKED');
    counts.rejected('b', 'DEVICE_REVOKED');
    const published: DeviceCountsMessage[] = [];
    await counts.tick((m) => published.push(m), () => true);
    expect(published).toEqual([
      { v: 1, device: 'a', accepted: 3, duplicates: 2, rejected: { READING_REPLAYED: 1 }, since: 1000, at: 1000 },
      { v: 1, device: 'b', accepted: 0, duplicates: 0, rejected: { DEVICE_REVOKED: 2 }, since: 1000, at: 1000 },
    ]);
    expect(await fileOf(dir.path)).toEqual(published);
    // Nothing changed: nothing published. Then only b.
    await counts.tick((m) => published.push(m), () => true);
    expect(published).toHaveLength(2);
    clock = 2_000;
    counts.accepted('b', 1);
    await counts.tick((m) => published.push(m), () => true);
    expect(published.slice(2)).toEqual([{ v: 1, device: 'b', accepted: 1, duplicates: 0, rejected: { DEVICE_REVOKED: 2 }, since: 1000, at: 2000 }]);
  });

  it('keeps what the broker could not take for a later tick, and publishes everything again after a restart', async () => {
    dir = await tempDir();
    const counts = await DeviceCounts.open(dir.path, { now });
    counts.accepted('a', 1);
    const published: DeviceCountsMessage[] = [];
    await counts.tick((m) => published.push(m), () => false);
    expect(published).toEqual([]);
    expect(await fileOf(dir.path)).toMatchObject([{ device: 'a', accepted: 1 }]);
    await counts.tick((m) => published.push(m), () => true);
    expect(published).toMatchObject([{ device: 'a', accepted: 1 }]);
    counts.accepted('a', 1);
    await counts.close();
    clock = 9_000;
    const again = await DeviceCounts.open(dir.path, { now });
    const republished: DeviceCountsMessage[] = [];
    await again.tick((m) => republished.push(m), () => true);
    expect(republished).toMatchObject([{ device: 'a', accepted: 2, since: 1000 }]);
  });

  it('publishes nothing it could not write, and writes it on a later tick', async () => {
    dir = await tempDir();
    const folder = join(dir.path, 'ingest');
    await mkdir(folder);
    const counts = await DeviceCounts.open(folder, { now });
    counts.accepted('a', 5);
    await rm(folder, { recursive: true });
    const published: DeviceCountsMessage[] = [];
    await counts.tick((m) => published.push(m), () => true);
    expect(published).toEqual([]);
    await mkdir(folder);
    await counts.tick((m) => published.push(m), () => true);
    expect(published).toMatchObject([{ device: 'a', accepted: 5 }]);
    expect(await fileOf(folder)).toMatchObject([{ device: 'a', accepted: 5 }]);
  });

  it.each([
    ['not JSON', '{"devices": ['],
    ['a negative count', JSON.stringify({ devices: [{ v: 1, device: 'a', accepted: -1, duplicates: 0, rejected: {}, since: 1, at: 1 }] })],
    ['an unknown reason', JSON.stringify({ devices: [{ v: 1, device: 'a', accepted: 1, duplicates: 0, rejected: { NOPE: 1 }, since: 1, at: 1 }] })],
    ['a made-up device id', JSON.stringify({ devices: [{ v: 1, device: '../x', accepted: 1, duplicates: 0, rejected: {}, since: 1, at: 1 }] })],
    ['another shape', '[]'],
  ])('begins anew from a counts file with %s', async (_what, text) => {
    dir = await tempDir();
    await writeFile(join(dir.path, COUNTS_FILE), text);
    clock = 5_000;
    const counts = await DeviceCounts.open(dir.path, { now });
    expect(counts.message('a')).toBeUndefined();
    counts.accepted('a', 1);
    expect(counts.message('a')).toMatchObject({ accepted: 1, since: 5000 });
  });
});
