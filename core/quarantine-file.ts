/**
 * The quarantine's files: the contract between their one writer (ingest/quarantine.ts) and their
 * readers (`sensorpipe quarantine list|replay`, the display's /api/quarantine), which run in other
 * processes while ingest appends.
 *
 * A quarantine folder holds `quarantine.jsonl` (current) and `quarantine.1.jsonl` (previous): one JSON
 * entry per line, oldest first, appended as whole lines and fsynced. When the current file is full it
 * is renamed over the previous one, whose entries are then evicted and added to `evicted` in
 * `quarantine-stats.json`. A reader may meet a line being written (cut short), a torn line left by a
 * crash, or a file edited by hand: every line is parsed with QuarantineEntrySchema, and one that does not
 * parse is skipped and counted, never thrown.
 */
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { REJECT_REASONS } from './errors.ts';

export const QUARANTINE_FILES = {
  current: 'quarantine.jsonl',
  previous: 'quarantine.1.jsonl',
  stats: 'quarantine-stats.json',
} as const;

/** One rejected message (or store-refused point), as ingest wrote it. */
export const QuarantineEntrySchema = z.object({
  at: z.number().int(),
  reason: z.enum(REJECT_REASONS),
  /** The device the message named, when one could be read; it may not be registered (DEVICE_UNKNOWN). */
  device: z.string().max(256).optional(),
  topic: z.string().max(256),
  /** Why, for people (ingest's words, not the code's text). */
  message: z.string().max(512),
  /** The payload as text when it is UTF-8, else base64; cut at ingest's SENSORPIPE_QUARANTINE_PAYLOAD bytes. */
  payload: z.string(),
  encoding: z.enum(['utf8', 'base64']),
  /** The whole payload's size. */
  payloadBytes: z.number().int().min(0),
  truncated: z.boolean(),
});
export type QuarantineEntry = z.infer<typeof QuarantineEntrySchema>;

const StatsSchema = z.object({ evicted: z.number().int().min(0) });

export interface QuarantineFilter {
  reason?: string | undefined;
  device?: string | undefined;
}

function matches(entry: QuarantineEntry, filter: QuarantineFilter): boolean {
  return (filter.reason === undefined || entry.reason === filter.reason) && (filter.device === undefined || entry.device === filter.device);
}

/** A line as an entry, or undefined when it is not one (cut short, torn, edited by hand). */
export function parseQuarantineLine(line: string): QuarantineEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  const parsed = QuarantineEntrySchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/** Entries evicted so far (0 when the stats file is absent or unreadable). */
export async function readQuarantineEvicted(dir: string): Promise<number> {
  const text = await readFile(join(dir, QUARANTINE_FILES.stats), 'utf8').catch(() => '');
  try {
    const parsed = StatsSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data.evicted : 0;
  } catch {
    return 0;
  }
}

/** Reads the whole quarantine (oldest first), optionally filtered; for the CLI and tests. */
export async function readQuarantine(dir: string, filter: QuarantineFilter = {}): Promise<{ entries: QuarantineEntry[]; evicted: number; skipped: number }> {
  const entries: QuarantineEntry[] = [];
  let skipped = 0;
  for (const file of [QUARANTINE_FILES.previous, QUARANTINE_FILES.current]) {
    const text = await readFile(join(dir, file), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const entry = parseQuarantineLine(line);
      if (entry === undefined) skipped++;
      else if (matches(entry, filter)) entries.push(entry);
    }
  }
  return { entries, evicted: await readQuarantineEvicted(dir), skipped };
}

/**
 * Where a page of newest-first entries begins. Without `skip`: the entries older than `at`. With it (the
 * `next` of a page): the entries written at `at` or earlier, after skipping the first `skip` of those
 * written at exactly `at` (many rejections of one flood share a millisecond, so a bare time could not
 * page through them). Written `<at>` or `<at>:<skip>` in a URL.
 */
export interface QuarantineCursor {
  at: number;
  skip?: number | undefined;
}

export interface QuarantinePageRequest extends QuarantineFilter {
  limit: number;
  before?: QuarantineCursor | undefined;
}

export interface QuarantinePage {
  /** False when the folder does not exist (ingest never ran there, or the display reads another machine's). */
  available: boolean;
  /** Newest first. */
  entries: QuarantineEntry[];
  /** The `before` of the next (older) page; absent on the last page. */
  next?: QuarantineCursor;
  evicted: number;
  /** Lines read that were not entries (a line being written, a torn one). */
  skipped: number;
}

export function formatQuarantineCursor(cursor: QuarantineCursor): string {
  return cursor.skip === undefined ? String(cursor.at) : `${cursor.at}:${cursor.skip}`;
}

/** Bytes read from a file's end at a time when reading it backwards. */
const CHUNK_BYTES = 64 * 1024;

/**
 * The lines of an open file, last first, read backwards in chunks: a page of the newest entries costs
 * what it shows, not the whole quarantine (up to SENSORPIPE_QUARANTINE_MAX entries of a few KiB each).
 * A last line without its newline (being written right now) is yielded too and fails to parse.
 */
async function* linesBackwards(handle: FileHandle): AsyncGenerator<string> {
  let position = (await handle.stat()).size;
  let carry: Buffer = Buffer.alloc(0);
  while (position > 0) {
    const length = Math.min(CHUNK_BYTES, position);
    position -= length;
    const chunk = Buffer.alloc(length);
    const { bytesRead } = await handle.read(chunk, 0, length, position);
    let buffer = Buffer.concat([chunk.subarray(0, bytesRead), carry]);
    // Everything after the first newline is whole lines; before it, the rest of a line that starts earlier.
    let end = buffer.length;
    for (let i = buffer.length - 1; i >= 0; i--) {
      if (buffer[i] !== 0x0a) continue;
      if (end > i + 1) yield buffer.toString('utf8', i + 1, end);
      end = i;
    }
    buffer = buffer.subarray(0, end);
    carry = buffer;
  }
  if (carry.length > 0) yield carry.toString('utf8');
}

async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * One page of the quarantine, newest first, filtered, from `before` on. Files are read backwards and
 * only as far as the page needs. The current file is opened before the previous one: when ingest
 * rotates in between, both handles are the same file, and it is read once.
 */
export async function readQuarantinePage(dir: string, request: QuarantinePageRequest): Promise<QuarantinePage> {
  const current = await openIfExists(join(dir, QUARANTINE_FILES.current));
  let previous: FileHandle | undefined;
  try {
    previous = await openIfExists(join(dir, QUARANTINE_FILES.previous));
    if (current === undefined && previous === undefined) {
      const available = await stat(dir).then(
        (s) => s.isDirectory(),
        () => false,
      );
      return { available, entries: [], evicted: available ? await readQuarantineEvicted(dir) : 0, skipped: 0 };
    }
    if (current !== undefined && previous !== undefined && (await current.stat()).ino === (await previous.stat()).ino) {
      await previous.close();
      previous = undefined;
    }
    const entries: QuarantineEntry[] = [];
    let skipped = 0;
    let seenAtCursor = 0;
    let more = false;
    scan: for (const handle of [current, previous]) {
      if (handle === undefined) continue;
      for await (const line of linesBackwards(handle)) {
        const entry = parseQuarantineLine(line);
        if (entry === undefined) {
          skipped++;
          continue;
        }
        if (!matches(entry, request)) continue;
        const before = request.before;
        if (before !== undefined) {
          if (entry.at > before.at) continue;
          if (entry.at === before.at && (before.skip === undefined || seenAtCursor++ < before.skip)) continue;
        }
        if (entries.length === request.limit) {
          more = true;
          break scan;
        }
        entries.push(entry);
      }
    }
    const page: QuarantinePage = { available: true, entries, evicted: await readQuarantineEvicted(dir), skipped };
    const last = entries.at(-1);
    if (more && last !== undefined) {
      // Entries of the page written in the last one's millisecond, plus those skipped to reach the page.
      let skip = 0;
      for (const entry of entries) if (entry.at === last.at) skip++;
      if (request.before?.skip !== undefined && request.before.at === last.at) skip += request.before.skip;
      page.next = { at: last.at, skip };
    }
    return page;
  } finally {
    await current?.close();
    await previous?.close();
  }
}
