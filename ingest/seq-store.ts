/**
 * Keeps the SeqTracker on disk, so a restart of ingest neither re-accepts a replay nor rejects a
 * legitimate redelivery. An append-only log of accepted messages (one JSON line each), written once
 * their readings are durable and before they are acknowledged, plus a snapshot that the log is folded
 * into now and then.
 *
 * A crash can lose at most log lines that were never fsynced, i.e. messages that were never
 * acknowledged: the broker redelivers them and the store's idempotent writes absorb the rewrite.
 */
import { open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { SeqTracker, type DeviceSeqState, type SeqTrackerOptions } from './seq-tracker.ts';

interface LogLine {
  d: string;
  s: number[];
  r: [number, number];
}

interface SnapshotDevice {
  high: number;
  gaps: number[];
  recent: [number, number][];
  received: number;
  missing: number;
}

/**
 * The log line of an accepted message: what `JSON.stringify({ d, s, r })` gives, built directly (it
 * runs once per message; seqs are integers, and the device id is quoted by JSON.stringify all the same).
 */
export function logLine(device: string, fresh: readonly number[], range: readonly [number, number]): string {
  return `{"d":${JSON.stringify(device)},"s":[${fresh.join(',')}],"r":[${range[0]},${range[1]}]}\n`;
}

export class SeqStore {
  readonly tracker: SeqTracker;
  private log: FileHandle | undefined;
  private logBytes = 0;

  private constructor(
    private readonly dir: string,
    options: SeqTrackerOptions,
    private readonly compactAfterBytes: number,
  ) {
    this.tracker = new SeqTracker(options);
  }

  static async open(dir: string, options: SeqTrackerOptions, compactAfterBytes = 32 * 1024 * 1024): Promise<SeqStore> {
    const store = new SeqStore(dir, options, compactAfterBytes);
    await store.load();
    return store;
  }

  /**
   * Records an accepted message in memory and returns its log line. The caller writes the line with
   * `append` only once the message's readings are durable: a line on disk for readings that were lost
   * in a crash would make their redelivery look like a duplicate.
   */
  accept(device: string, fresh: readonly number[], range: [number, number]): string {
    this.tracker.accept(device, fresh, range);
    return logLine(device, fresh, range);
  }

  /** Writes and fsyncs log lines; call before acknowledging the messages they describe. */
  async append(lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    const text = lines.join('');
    const log = await this.openLog();
    await log.appendFile(text, 'utf8');
    await log.datasync();
    this.logBytes += Buffer.byteLength(text);
    if (this.logBytes > this.compactAfterBytes) await this.compact();
  }

  /** Folds the log into a fresh snapshot (written atomically) and starts an empty log. */
  async compact(): Promise<void> {
    const devices: Record<string, SnapshotDevice> = {};
    for (const [id, s] of this.tracker.devicesTracked()) {
      devices[id] = { high: s.high, gaps: [...s.gaps], recent: s.recent, received: s.received, missing: s.missing };
    }
    const temp = join(this.dir, 'seq-snapshot.json.tmp');
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(JSON.stringify({ version: 1, devices }));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(this.dir, 'seq-snapshot.json'));
    await this.log?.close();
    this.log = undefined;
    await rm(join(this.dir, 'seq.log'), { force: true });
    this.logBytes = 0;
  }

  async close(): Promise<void> {
    await this.log?.close();
    this.log = undefined;
  }

  private async openLog(): Promise<FileHandle> {
    this.log ??= await open(join(this.dir, 'seq.log'), 'a', 0o600);
    return this.log;
  }

  private async load(): Promise<void> {
    const snapshot = await readFile(join(this.dir, 'seq-snapshot.json'), 'utf8').catch(() => undefined);
    if (snapshot !== undefined) {
      const parsed = JSON.parse(snapshot) as { devices: Record<string, SnapshotDevice> };
      for (const [id, d] of Object.entries(parsed.devices)) {
        const state: DeviceSeqState = { high: d.high, gaps: new Set(d.gaps), recent: d.recent, received: d.received, missing: d.missing };
        this.tracker.restore(id, state);
      }
    }
    const log = await readFile(join(this.dir, 'seq.log'), 'utf8').catch(() => '');
    this.logBytes = Buffer.byteLength(log);
    for (const line of log.split('\n')) {
      if (line === '') continue;
      let entry: LogLine;
      try {
        entry = JSON.parse(line) as LogLine;
      } catch {
        // A torn last line from a crash: it was never fsynced, so its messages were never acknowledged.
        continue;
      }
      this.tracker.accept(entry.d, entry.s, entry.r);
    }
  }
}
