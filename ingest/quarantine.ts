/**
 * The quarantine: every rejected message is kept, with its reason code, device, topic, time and a copy
 * of its payload (truncated past a limit), so that nothing is silently dropped and an operator can see
 * why. Bounded: two JSON-lines files used as a ring; when the current one is full it replaces the
 * previous one, whose entries are counted as evicted.
 *
 * `sensorpipe quarantine list` reads the same files from another process; appends are whole lines.
 */
import { mkdir, open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { RejectReason } from '../core/errors.ts';

export interface QuarantineEntry {
  at: number;
  reason: RejectReason;
  device?: string;
  topic: string;
  message: string;
  /** The payload as text when it is UTF-8, else base64; cut at `payloadLimit` bytes. */
  payload: string;
  encoding: 'utf8' | 'base64';
  payloadBytes: number;
  truncated: boolean;
}

const CURRENT = 'quarantine.jsonl';
const PREVIOUS = 'quarantine.1.jsonl';
const STATS = 'quarantine-stats.json';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function quarantineEntry(input: { reason: RejectReason; topic: string; device?: string | undefined; message: string; payload: Uint8Array; at?: number }, payloadLimit: number): QuarantineEntry {
  const cut = input.payload.subarray(0, payloadLimit);
  let payload: string;
  let encoding: 'utf8' | 'base64' = 'utf8';
  try {
    payload = strictUtf8.decode(cut);
  } catch {
    payload = Buffer.from(cut).toString('base64');
    encoding = 'base64';
  }
  return {
    at: input.at ?? Date.now(),
    reason: input.reason,
    ...(input.device !== undefined ? { device: input.device } : {}),
    topic: input.topic.slice(0, 256),
    message: input.message.slice(0, 512),
    payload,
    encoding,
    payloadBytes: input.payload.byteLength,
    truncated: cut.byteLength < input.payload.byteLength,
  };
}

export class Quarantine {
  private handle: FileHandle | undefined;
  private pending: string[] = [];
  private linesInCurrent = 0;
  private evicted = 0;

  private constructor(
    private readonly dir: string,
    /** Entries per file; the quarantine keeps between this and twice this many. */
    private readonly perFile: number,
  ) {}

  static async open(dir: string, options: { maxEntries: number }): Promise<Quarantine> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const quarantine = new Quarantine(dir, Math.max(1, Math.ceil(options.maxEntries / 2)));
    const current = await readFile(join(dir, CURRENT), 'utf8').catch(() => '');
    quarantine.linesInCurrent = current.split('\n').filter(Boolean).length;
    const stats = await readFile(join(dir, STATS), 'utf8').catch(() => '{}');
    quarantine.evicted = (JSON.parse(stats) as { evicted?: number }).evicted ?? 0;
    return quarantine;
  }

  get evictedCount(): number {
    return this.evicted;
  }

  add(entry: QuarantineEntry): void {
    this.pending.push(`${JSON.stringify(entry)}\n`);
  }

  /** Writes and fsyncs queued entries; call before acknowledging the rejected messages. */
  async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const room = this.perFile - this.linesInCurrent;
      if (room <= 0) {
        await this.rotate();
        continue;
      }
      const lines = this.pending.splice(0, room);
      this.handle ??= await open(join(this.dir, CURRENT), 'a', 0o600);
      await this.handle.appendFile(lines.join(''), 'utf8');
      await this.handle.datasync();
      this.linesInCurrent += lines.length;
    }
  }

  async close(): Promise<void> {
    await this.flush();
    await this.handle?.close();
    this.handle = undefined;
  }

  private async rotate(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
    const previous = await readFile(join(this.dir, PREVIOUS), 'utf8').catch(() => '');
    this.evicted += previous.split('\n').filter(Boolean).length;
    await writeFile(join(this.dir, STATS), JSON.stringify({ evicted: this.evicted }), { mode: 0o600 });
    await rename(join(this.dir, CURRENT), join(this.dir, PREVIOUS));
    this.linesInCurrent = 0;
  }
}

/** Reads the quarantine (oldest first), optionally filtered; for the CLI and tests. */
export async function readQuarantine(dir: string, filter: { reason?: string; device?: string } = {}): Promise<{ entries: QuarantineEntry[]; evicted: number }> {
  const entries: QuarantineEntry[] = [];
  for (const file of [PREVIOUS, CURRENT]) {
    const text = await readFile(join(dir, file), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        entries.push(JSON.parse(line) as QuarantineEntry);
      } catch {
        // a line being written right now by ingest
      }
    }
  }
  const stats = await readFile(join(dir, STATS), 'utf8').catch(() => '{}');
  return {
    entries: entries.filter((e) => (filter.reason === undefined || e.reason === filter.reason) && (filter.device === undefined || e.device === filter.device)),
    evicted: (JSON.parse(stats) as { evicted?: number }).evicted ?? 0,
  };
}
