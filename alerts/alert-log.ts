/**
 * The durable alert log: one AlertEvent per line (JSON), appended and fsynced before anyone else sees
 * the event (the retained state, the webhooks). Bounded: past `maxBytes` the file is renamed to
 * `<file>.1` (replacing the older one) and a new one begins, so at most twice `maxBytes` are kept.
 * Read back at start (the rotated file, then the current one): the history the API serves, and the last
 * state of every (rule, device), so a restart neither fires again what is firing nor forgets it. A line
 * that does not parse (a torn last write) is skipped and counted.
 */
import { open, rename, stat, type FileHandle } from 'node:fs/promises';
import type { AlertEvent } from '../core/alerts.ts';
import { parseEventLines, readTextIfExists } from './event-lines.ts';

export interface AlertLogOptions {
  path: string;
  maxBytes: number;
}

export class AlertLog {
  /** Every event in the kept files, oldest first. */
  private events: AlertEvent[] = [];
  /** How many events the older (rotated) file holds: the first ones of `events`. */
  private rotatedCount = 0;
  private handle: FileHandle | undefined;
  private size = 0;
  private writing: Promise<void> = Promise.resolve();
  private endsWithNewline = true;
  /** Lines that did not parse when read back. */
  skippedLines = 0;

  private constructor(private readonly options: AlertLogOptions) {}

  static async open(options: AlertLogOptions): Promise<AlertLog> {
    const log = new AlertLog(options);
    const older = await log.readFile(`${options.path}.1`);
    const current = await log.readFile(options.path);
    log.events = [...older, ...current];
    log.rotatedCount = older.length;
    log.handle = await open(options.path, 'a', 0o600);
    log.size = (await stat(options.path)).size;
    // A torn last line (a crash mid-write) is ended, so the next event starts a line of its own.
    if (log.size > 0 && !log.endsWithNewline) {
      await log.handle.write('\n');
      await log.handle.datasync();
      log.size += 1;
    }
    return log;
  }

  private async readFile(path: string): Promise<AlertEvent[]> {
    const text = await readTextIfExists(path);
    if (path === this.options.path) this.endsWithNewline = text === '' || text.endsWith('\n');
    const { events, skipped } = parseEventLines(text);
    this.skippedLines += skipped;
    return events;
  }

  /** Appends and fsyncs; resolves once the event is on disk. Appends are written in call order. */
  append(event: AlertEvent): Promise<void> {
    const line = `${JSON.stringify(event)}\n`;
    const done = this.writing.then(async () => {
      const bytes = Buffer.byteLength(line);
      if (this.size > 0 && this.size + bytes > this.options.maxBytes) await this.rotate();
      const handle = this.handle!;
      await handle.write(line);
      await handle.datasync();
      this.size += bytes;
      this.events.push(event);
    });
    // The chain goes on after a failed write; the caller sees the failure.
    this.writing = done.catch(() => undefined);
    return done;
  }

  private async rotate(): Promise<void> {
    await this.handle?.close();
    await rename(this.options.path, `${this.options.path}.1`);
    this.events = this.events.slice(this.rotatedCount);
    this.rotatedCount = this.events.length;
    this.handle = await open(this.options.path, 'a', 0o600);
    this.size = 0;
  }

  /** Every kept event, oldest first (do not change it). */
  all(): readonly AlertEvent[] {
    return this.events;
  }

  /** Newest first, filtered, at most `limit`. */
  query(filter: { device?: string | undefined; rule?: string | undefined; from?: number | undefined; to?: number | undefined; limit: number }): AlertEvent[] {
    const out: AlertEvent[] = [];
    for (let i = this.events.length - 1; i >= 0 && out.length < filter.limit; i--) {
      const e = this.events[i]!;
      if (filter.device !== undefined && e.device !== filter.device) continue;
      if (filter.rule !== undefined && e.rule !== filter.rule) continue;
      if (filter.from !== undefined && e.at < filter.from) continue;
      if (filter.to !== undefined && e.at >= filter.to) continue;
      out.push(e);
    }
    return out;
  }

  async close(): Promise<void> {
    await this.writing;
    await this.handle?.close();
    this.handle = undefined;
  }
}
