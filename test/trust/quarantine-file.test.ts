/**
 * The quarantine files' reader (core/quarantine-file.ts), on files written by ingest's own writer
 * (ingest/quarantine.ts) and on hostile ones: newest first across the rotated and the current file,
 * pages through a flood that shares one millisecond without losing or repeating an entry, reads lines
 * longer than its read chunk, and skips (counts) torn, hand-edited and foreign lines instead of throwing.
 */
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QUARANTINE_FILES, readQuarantine, readQuarantinePage, type QuarantineCursor, type QuarantineEntry } from '../../core/quarantine-file.ts';
import { Quarantine, quarantineEntry } from '../../ingest/quarantine.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir | undefined;
afterEach(async () => {
  await dir?.remove();
  dir = undefined;
});

async function written(entries: { at: number; device: string; payload?: string }[], maxEntries = 1000): Promise<string> {
  dir = await tempDir();
  const path = join(dir.path, 'q');
  const quarantine = await Quarantine.open(path, { maxEntries });
  for (const e of entries) quarantine.add(quarantineEntry({ reason: 'READING_BAD_SIGNATURE', topic: `sensors/${e.device}/telemetry`, device: e.device, message: 'bad', payload: Buffer.from(e.payload ?? `p${e.at}`), at: e.at }, 1 << 20));
  await quarantine.flush();
  await quarantine.close();
  return path;
}

/** Every page of `limit`, followed by `next`. */
async function allPages(path: string, limit: number, filter: { device?: string } = {}): Promise<QuarantineEntry[][]> {
  const pages: QuarantineEntry[][] = [];
  let before: QuarantineCursor | undefined;
  for (;;) {
    const page = await readQuarantinePage(path, { ...filter, limit, before });
    pages.push(page.entries);
    if (page.next === undefined) return pages;
    before = page.next;
  }
}

describe('readQuarantinePage', () => {
  it('pages through a flood written in one millisecond, every entry exactly once, newest first', async () => {
    const entries = Array.from({ length: 25 }, (_, i) => ({ at: i < 3 ? 1000 : i < 20 ? 2000 : 3000, device: 'dev-1', payload: `n${i}` }));
    const path = await written(entries);
    const pages = await allPages(path, 4);
    expect(pages.map((p) => p.length)).toEqual([4, 4, 4, 4, 4, 4, 1]);
    expect(pages.flat().map((e) => e.payload)).toEqual(entries.map((e) => e.payload).reverse());
  });

  it('reads across the rotated and the current file, newest first, and counts what was evicted', async () => {
    // 4 per file: 10 entries leave the last 6 or so (2 files of at most 4), the rest evicted.
    const path = await written(Array.from({ length: 10 }, (_, i) => ({ at: 100 + i, device: i % 2 === 0 ? 'even' : 'odd' })), 8);
    const page = await readQuarantinePage(path, { limit: 100 });
    expect(page.entries.map((e) => e.at)).toEqual([109, 108, 107, 106, 105, 104].slice(0, page.entries.length));
    expect(page.evicted + page.entries.length).toBe(10);
    expect(page.evicted).toBeGreaterThan(0);
    expect((await readQuarantinePage(path, { limit: 100, device: 'odd' })).entries.every((e) => e.device === 'odd')).toBe(true);
  });

  it('reads lines longer than its chunk and many lines across chunks', async () => {
    const big = 'x'.repeat(200_000);
    const entries = [{ at: 1, device: 'a', payload: big }, ...Array.from({ length: 2000 }, (_, i) => ({ at: 2 + i, device: 'a', payload: `é${i}€` }))];
    const path = await written(entries, 10_000);
    const pages = await allPages(path, 333);
    const flat = pages.flat();
    expect(flat).toHaveLength(2001);
    expect(flat.at(-1)!.payload).toBe(big);
    expect(flat[0]!.payload).toBe('é1999€');
  });

  it('skips and counts lines that are not entries: torn, hand-edited, foreign, hostile', async () => {
    const path = await written([{ at: 1, device: 'a' }, { at: 2, device: 'b' }]);
    await appendFile(join(path, QUARANTINE_FILES.current), [
      '{"at":3,"reason":"NOT_A_REASON","topic":"t","message":"m","payload":"p","encoding":"utf8","payloadBytes":1,"truncated":false}',
      '{"__proto__":{"polluted":true},"at":4}',
      'null',
      '[]',
      '{"at":5,"reason":"READING_BAD_SIG', // torn: the line being written
    ].join('\n'));
    const page = await readQuarantinePage(path, { limit: 10 });
    expect(page.entries.map((e) => e.device)).toEqual(['b', 'a']);
    expect(page.skipped).toBe(5);
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
    expect((await readQuarantine(path)).skipped).toBe(5);
  });

  it('answers a folder that does not exist as unavailable, and an empty one as available', async () => {
    dir = await tempDir();
    expect(await readQuarantinePage(join(dir.path, 'missing'), { limit: 10 })).toEqual({ available: false, entries: [], evicted: 0, skipped: 0 });
    await mkdir(join(dir.path, 'empty'));
    await writeFile(join(dir.path, 'empty', QUARANTINE_FILES.stats), 'garbage');
    expect(await readQuarantinePage(join(dir.path, 'empty'), { limit: 10 })).toEqual({ available: true, entries: [], evicted: 0, skipped: 0 });
  });
});
