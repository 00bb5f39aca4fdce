/**
 * Keeps the SeqTracker on disk, so a restart of ingest neither re-accepts a replay nor rejects a
 * legitimate redelivery. An append-only log of accepted messages (one JSON line each), written once
 * their readings are durable and before they are acknowledged, plus a snapshot that the log is folded
 * into now and then.
 *
 * A crash can lose at most log lines that were never fsynced, i.e. messages that were never
 * acknowledged: the broker redelivers them and the store's idempotent writes absorb the rewrite.
 *
 * Formats. A log line is `{"d":device,"s":[fresh seqs],"r":[first,last],"h":"5 base64 characters of the
 * digest"}`; the snapshot is
 * `{"version":2,"devices":{id:{high,gaps,recent:[[first,last,digest]…],received,missing}},"fleet":[id…]}`
 * (`fleet`: the device of each message in the fleet window, oldest first; seq-tracker.ts). Files of the
 * version before digests (no `h`; `recent` as [first,last] pairs; no `fleet`) load as messages of unknown
 * content, which match any message with their seqs as they did then; that version also reads these
 * files (it ignores `h`, `fleet` and the third number of each `recent` entry).
 */
import { open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../core/logger.ts';
import { SeqTracker, signatureDigest, UNKNOWN_DIGEST, type DeviceSeqState, type SavedDeviceState, type SeqTrackerOptions } from './seq-tracker.ts';

interface LogLine {
  d: string;
  s: number[];
  r: [number, number];
  /** The digest's 5 base64 characters; absent in lines written before digests were kept. */
  h?: string;
}

interface SnapshotDevice {
  high: number;
  gaps: number[];
  /** [first, last, digest]; [first, last] in snapshots written before digests were kept. */
  recent: number[][];
  received: number;
  missing: number;
}

interface Snapshot {
  version?: number;
  devices: Record<string, SnapshotDevice>;
  fleet?: string[];
}

/**
 * The log lines of a batch of accepted messages (`SeqStore.openBatch`): in memory at once, in the log
 * once their readings are durable (`SeqStore.append`). Until then the store counts them as not durable.
 */
export interface SeqBatch {
  readonly lines: string[];
}

const BASE64_CHARS = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].map((c) => c.charCodeAt(0));

/**
 * A digest as the 5 base64 characters it was read from (seq-tracker.ts `signatureDigest`): shorter than
 * its decimal digits, and five table lookups instead of a number-to-string conversion (digests are
 * random, so V8's cache of those conversions would miss on every line).
 */
function digestText(digest: number): string {
  if (digest === UNKNOWN_DIGEST) return '';
  const c = BASE64_CHARS;
  return String.fromCharCode(c[(digest >>> 24) & 63]!, c[(digest >>> 18) & 63]!, c[(digest >>> 12) & 63]!, c[(digest >>> 6) & 63]!, c[digest & 63]!);
}

/**
 * The log line of an accepted message: what `JSON.stringify({ d, s, r, h })` gives, built directly (it
 * runs once per message; seqs are integers, the digest's characters are JSON-safe, and the device id is
 * quoted by JSON.stringify).
 */
export function logLine(device: string, fresh: readonly number[], range: readonly [number, number], digest: number): string {
  return `{"d":${JSON.stringify(device)},"s":[${fresh.join(',')}],"r":[${range[0]},${range[1]}],"h":"${digestText(digest)}"}\n`;
}

export class SeqStore {
  readonly tracker: SeqTracker;
  private log: FileHandle | undefined;
  private logBytes = 0;
  /** The log may end in a partial line (a failed write, a crash): the next write starts a new line. */
  private tornTail = false;
  /**
   * Batches accepted in memory and not logged yet: their messages' readings are not durable. Tracked
   * per batch, not per message: a Set of messages cost 1.5 µs a message (measured, 1,000 devices).
   */
  private readonly pending = new Set<SeqBatch>();
  /** Appends (the pipeline's batches, and the spool's unblocking) and compactions take turns. */
  private turn: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    private readonly options: SeqTrackerOptions,
    private readonly compactAfterBytes: number,
    private readonly logger: Logger | undefined,
  ) {
    this.tracker = new SeqTracker(options);
  }

  static async open(dir: string, options: SeqTrackerOptions, settings: { compactAfterBytes?: number; logger?: Logger } = {}): Promise<SeqStore> {
    const store = new SeqStore(dir, options, settings.compactAfterBytes ?? 32 * 1024 * 1024, settings.logger);
    await store.load();
    return store;
  }

  /** A batch for the lines of accepted messages; not durable until `append` wrote it. */
  openBatch(): SeqBatch {
    const batch = { lines: [] };
    this.pending.add(batch);
    return batch;
  }

  /**
   * Records an accepted message in memory, and its line in `batch`. The caller writes the batch with
   * `append` only once the messages' readings are durable: a line on disk for readings that were lost
   * in a crash would make their redelivery look like a duplicate.
   */
  accept(batch: SeqBatch, device: string, fresh: readonly number[], range: readonly [number, number], digest: number): void {
    this.tracker.accept(device, fresh, range, digest);
    batch.lines.push(logLine(device, fresh, range, digest));
  }

  /** Writes and fsyncs a batch's log lines; call before acknowledging the messages they describe. */
  append(batch: SeqBatch): Promise<void> {
    if (batch.lines.length === 0) {
      this.pending.delete(batch);
      return Promise.resolve();
    }
    return this.exclusive(() => this.appendNow(batch));
  }

  /** Folds the log into a fresh snapshot (written atomically) and starts an empty log. */
  compact(): Promise<void> {
    return this.exclusive(() => this.compactNow());
  }

  close(): Promise<void> {
    return this.exclusive(async () => {
      await this.log?.close();
      this.log = undefined;
    });
  }

  private exclusive<R>(operation: () => Promise<R>): Promise<R> {
    const result = this.turn.then(operation);
    this.turn = result.catch(() => {});
    return result;
  }

  private async appendNow(batch: SeqBatch): Promise<void> {
    const text = (this.tornTail ? '\n' : '') + batch.lines.join('');
    const log = await this.openLog();
    try {
      await log.appendFile(text, 'utf8');
      await log.datasync();
    } catch (err) {
      // Part of the text may be in the file: the caller retries the records, on a line of their own.
      this.tornTail = true;
      throw err;
    }
    this.tornTail = false;
    this.pending.delete(batch);
    this.logBytes += Buffer.byteLength(text);
    if (this.logBytes <= this.compactAfterBytes) return;
    // The lines are durable whatever happens to the compaction: a failed one is tried again after the
    // next append (the log only grows meanwhile), and never makes the caller write the lines twice.
    await this.compactNow().catch((err: unknown) => this.logger?.error({ err }, 'seq log compaction failed; retried after the next append'));
  }

  /**
   * The snapshot is taken from memory, which already holds messages whose readings are not durable yet
   * (accepted, in a batch being written): their seqs are saved as gaps, as if never received, so that
   * after a crash their redelivery is accepted and written, not taken for a duplicate. Their lines
   * reach the new log once they are durable, and fill those gaps again at the next load.
   */
  private async compactNow(): Promise<void> {
    const notDurable = new Map<string, number[]>();
    for (const batch of this.pending) {
      for (const line of batch.lines) {
        const { d, s } = JSON.parse(line) as LogLine; // rare: at most the unacknowledged messages
        const seqs = notDurable.get(d);
        if (seqs === undefined) notDurable.set(d, [...s]);
        else seqs.push(...s);
      }
    }
    const devices: Record<string, SnapshotDevice> = {};
    const idOf = new Map<DeviceSeqState, string>();
    for (const [id, s] of this.tracker.devicesTracked()) {
      idOf.set(s, id);
      const saved: SnapshotDevice = { high: s.high, gaps: [...s.gaps], recent: this.tracker.remembered(s), received: s.received, missing: s.missing };
      for (const seq of notDurable.get(id) ?? []) {
        if (seq < s.high - this.options.gapWindow || s.gaps.has(seq)) continue;
        saved.gaps.push(seq);
        saved.received--;
        saved.missing++;
      }
      devices[id] = saved;
    }
    const fleet = this.tracker.fleetOrder().map((s) => idOf.get(s)!);
    const text = JSON.stringify({ version: 2, devices, fleet } satisfies Snapshot);
    const temp = join(this.dir, 'seq-snapshot.json.tmp');
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(this.dir, 'seq-snapshot.json'));
    await this.log?.close();
    this.log = undefined;
    await rm(join(this.dir, 'seq.log'), { force: true });
    this.logBytes = 0;
    this.tornTail = false;
  }

  private async openLog(): Promise<FileHandle> {
    this.log ??= await open(join(this.dir, 'seq.log'), 'a', 0o600);
    return this.log;
  }

  private async load(): Promise<void> {
    const snapshot = await readFile(join(this.dir, 'seq-snapshot.json'), 'utf8').catch(() => undefined);
    if (snapshot !== undefined) {
      const parsed = JSON.parse(snapshot) as Snapshot;
      for (const [id, d] of Object.entries(parsed.devices)) this.tracker.restore(id, d satisfies SavedDeviceState);
      this.tracker.restoreFleetOrder(parsed.fleet ?? []);
    }
    const log = await readFile(join(this.dir, 'seq.log'), 'utf8').catch(() => '');
    this.logBytes = Buffer.byteLength(log);
    // A crash mid-write leaves a partial last line: new lines must not be glued to it.
    this.tornTail = log !== '' && !log.endsWith('\n');
    for (const line of log.split('\n')) {
      if (line === '') continue;
      let entry: LogLine;
      try {
        entry = JSON.parse(line) as LogLine;
      } catch {
        // A torn line from a crash or a failed write: it was never fsynced whole, so its messages were
        // never acknowledged.
        continue;
      }
      this.tracker.accept(entry.d, entry.s, entry.r, typeof entry.h === 'string' && entry.h.length === 5 ? signatureDigest(entry.h) : UNKNOWN_DIGEST);
    }
  }
}
