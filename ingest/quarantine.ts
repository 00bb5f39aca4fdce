/**
 * The quarantine: every rejected message is kept, with its reason code, device, topic, time and a copy
 * of its payload (truncated past a limit), so that nothing is silently dropped and an operator can see
 * why. Bounded: two JSON-lines files used as a ring; when the current one is full it replaces the
 * previous one, whose entries are counted as evicted. Flushes are serialised, and a failed write is
 * retried (the messages it holds stay unacknowledged until their entries are durable): a quarantine
 * that cannot be written slows ingest down, never crashes it (issue 14).
 *
 * `sensorpipe quarantine list` and the display read the same files from other processes, through
 * core/quarantine-file.ts (their format is defined there); appends are whole lines.
 */
import { mkdir, open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RejectReason } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { QUARANTINE_FILES, readQuarantineEvicted, type QuarantineEntry } from '../core/quarantine-file.ts';

// The files' format and their reader are core/quarantine-file.ts (shared with the CLI and the display);
// re-exported for the tests and tools that read a quarantine through ingest.
export { readQuarantine, type QuarantineEntry } from '../core/quarantine-file.ts';

const CURRENT = QUARANTINE_FILES.current;
const PREVIOUS = QUARANTINE_FILES.previous;
const STATS = QUARANTINE_FILES.stats;

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

export interface QuarantineOptions {
  maxEntries: number;
  /** First wait before retrying a failed write; doubles (with jitter) up to `retryMaxMs`. */
  retryMinMs?: number;
  retryMaxMs?: number;
  logger?: Logger;
  /** Once aborted (ingest is stopping), a failed write is not retried: `flush` rejects instead. */
  signal?: AbortSignal;
}

export class Quarantine {
  private handle: FileHandle | undefined;
  /** Entries not yet durable, oldest first; an entry leaves only once it is written and fsynced. */
  private pending: string[] = [];
  private linesInCurrent = 0;
  private linesInPrevious = 0;
  private evicted = 0;
  /** The evicted count changed and is not in the stats file yet (its write failed). */
  private statsDirty = false;
  /** The current file may end in a partial line (a failed write, a crash): the next write starts a new line. */
  private tornTail = false;
  /** Flushes run one at a time, in call order: two at once rotated the same file twice (ENOENT). */
  private flushing: Promise<unknown> = Promise.resolve();
  private closing = false;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;

  private constructor(
    private readonly dir: string,
    /** Entries per file; the quarantine keeps between this and twice this many. */
    private readonly perFile: number,
    private readonly options: QuarantineOptions,
  ) {
    this.retryMinMs = options.retryMinMs ?? 250;
    this.retryMaxMs = Math.max(this.retryMinMs, options.retryMaxMs ?? 10_000);
  }

  static async open(dir: string, options: QuarantineOptions): Promise<Quarantine> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const quarantine = new Quarantine(dir, Math.max(1, Math.ceil(options.maxEntries / 2)), options);
    const current = await readFile(join(dir, CURRENT), 'utf8').catch(() => '');
    quarantine.linesInCurrent = countLines(current);
    quarantine.tornTail = current !== '' && !current.endsWith('\n');
    quarantine.linesInPrevious = countLines(await readFile(join(dir, PREVIOUS), 'utf8').catch(() => ''));
    quarantine.evicted = await readQuarantineEvicted(dir);
    return quarantine;
  }

  get evictedCount(): number {
    return this.evicted;
  }

  add(entry: QuarantineEntry): void {
    this.pending.push(`${JSON.stringify(entry)}\n`);
  }

  /**
   * Writes and fsyncs the entries added so far; call before acknowledging the rejected messages. Callers
   * at the same time wait in turn on one chain. A failed write is retried, with capped exponential
   * backoff and jitter, until it succeeds: the promise resolves only once the entries are durable, so
   * their messages stay unacknowledged meanwhile. It rejects only when ingest is stopping (the signal
   * is aborted, or `close` was called); the messages then stay unacknowledged and the broker redelivers
   * them to the next run.
   */
  flush(): Promise<void> {
    const run = this.flushing.then(() => this.writeWithRetry());
    this.flushing = run.catch(() => {});
    return run;
  }

  /** Flushes (one last attempt when writing fails) and closes the file. Never rejects. */
  async close(): Promise<void> {
    this.closing = true;
    await this.flush().catch((err: unknown) => {
      this.options.logger?.error({ err: errorText(err), entries: this.pending.length }, 'quarantine entries not written at shutdown; their messages were not acknowledged');
    });
    await this.closeCurrent().catch(() => {});
  }

  private async writeWithRetry(): Promise<void> {
    let delay = this.retryMinMs;
    for (let failures = 0; ; failures++) {
      try {
        await this.writePending();
        if (failures > 0) this.options.logger?.warn({ failures }, 'quarantine writable again');
        return;
      } catch (err) {
        if (this.closing || this.options.signal?.aborted === true) throw err;
        const wait = Math.round(Math.min(this.retryMaxMs, delay) * (0.5 + Math.random() / 2));
        this.options.logger?.error({ err: errorText(err), entries: this.pending.length, retryInMs: wait }, 'quarantine write failed; retrying, its messages stay unacknowledged');
        await sleep(wait, undefined, this.options.signal ? { signal: this.options.signal } : {});
        delay = Math.min(this.retryMaxMs, delay * 2);
      }
    }
  }

  private async writePending(): Promise<void> {
    if (this.statsDirty) await this.writeStats();
    while (this.pending.length > 0) {
      if (this.linesInCurrent >= this.perFile) {
        await this.rotate();
        continue;
      }
      const count = Math.min(this.perFile - this.linesInCurrent, this.pending.length);
      const handle = await this.openCurrent();
      const text = (this.tornTail ? '\n' : '') + this.pending.slice(0, count).join('');
      try {
        await handle.appendFile(text, 'utf8');
        await handle.datasync();
        // Written into a file that was removed meanwhile (its folder deleted, say): nobody would read it.
        if ((await handle.stat()).nlink === 0) throw new Error('the quarantine file was removed while open');
      } catch (err) {
        // Part of the text may be in the file; the entries stay pending and go on a line of their own.
        this.tornTail = true;
        await this.closeCurrent().catch(() => {});
        throw err;
      }
      this.tornTail = false;
      this.pending.splice(0, count);
      this.linesInCurrent += count;
    }
  }

  private async openCurrent(): Promise<FileHandle> {
    if (this.handle !== undefined) return this.handle;
    // The folder may have been removed: make it again rather than fail for ever.
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const handle = await open(join(this.dir, CURRENT), 'a', 0o600);
    try {
      if ((await handle.stat()).size === 0) {
        // A new file (the first, or one made again after the old one was removed).
        this.linesInCurrent = 0;
        this.tornTail = false;
      }
    } catch (err) {
      await handle.close();
      throw err;
    }
    this.handle = handle;
    return handle;
  }

  private async closeCurrent(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }

  /**
   * The current file becomes the previous one, whose entries are evicted. Safe to retry after a
   * failure at any step: the counts change only once the rename is done.
   */
  private async rotate(): Promise<void> {
    await this.closeCurrent();
    try {
      await rename(join(this.dir, CURRENT), join(this.dir, PREVIOUS));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The current file is gone (removed by hand): nothing to rotate, nothing evicted.
      this.linesInCurrent = 0;
      return;
    }
    this.evicted += this.linesInPrevious;
    this.linesInPrevious = this.linesInCurrent;
    this.linesInCurrent = 0;
    this.statsDirty = true;
    await this.writeStats();
  }

  private async writeStats(): Promise<void> {
    await writeFile(join(this.dir, STATS), JSON.stringify({ evicted: this.evicted }), { mode: 0o600 });
    this.statsDirty = false;
  }
}

function countLines(text: string): number {
  return text.split('\n').filter(Boolean).length;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
