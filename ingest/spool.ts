/**
 * The disk spool: where accepted readings wait, durably, while the store is down. Append-only segment
 * files of length-prefixed, CRC-checked records, replayed oldest first. A record is appended and
 * fsynced before the messages it holds are acknowledged, so nothing acknowledged lives only in memory.
 *
 * Record layout: u32 length ‖ u32 crc32(body) ‖ body (JSON: { at, items }), big-endian.
 * A torn record at the end of a segment (a crash mid-write) fails its length or CRC check and is
 * dropped: it was never fsynced, so the messages in it were never acknowledged and will be redelivered.
 */
import { mkdir, open, readdir, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

const HEADER_BYTES = 8;
const SEGMENT_PATTERN = /^(\d{12})\.seg$/;

export interface SpoolRecord<T> {
  /** Opaque position; pass it back to `release` once the record is safely in the store. */
  segment: number;
  index: number;
  at: number;
  items: T[];
}

interface Segment {
  number: number;
  bytes: number;
}

export class Spool<T> {
  private segments: Segment[] = [];
  private writer: { number: number; handle: FileHandle } | undefined;
  /** Records of the oldest segment, read into memory while it is replayed. */
  private reading: { number: number; records: SpoolRecord<T>[]; next: number } | undefined;
  private totalBytes = 0;
  /** Appends (ingest's flushes) and reads (the replayer) interleave; file operations take turns. */
  private turn: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    readonly maxBytes: number,
    private readonly segmentBytes: number,
  ) {}

  static async open<T>(dir: string, options: { maxBytes: number; segmentBytes?: number }): Promise<Spool<T>> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const spool = new Spool<T>(dir, options.maxBytes, options.segmentBytes ?? 8 * 1024 * 1024);
    for (const name of (await readdir(dir)).sort()) {
      const match = SEGMENT_PATTERN.exec(name);
      if (!match) continue;
      const { size } = await stat(join(dir, name));
      spool.segments.push({ number: Number(match[1]), bytes: size });
      spool.totalBytes += size;
    }
    return spool;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  get isEmpty(): boolean {
    return this.segments.length === 0;
  }

  /** True when a record of about `bytes` would still fit under the limit. */
  hasRoomFor(bytes: number): boolean {
    return this.totalBytes + bytes + HEADER_BYTES <= this.maxBytes;
  }

  /** Encodes a record; its size decides whether it fits (see `hasRoomFor`). */
  encode(items: T[], at = Date.now()): Buffer {
    const body = Buffer.from(JSON.stringify({ at, items }));
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32BE(body.length, 0);
    header.writeUInt32BE(crc32(body), 4);
    return Buffer.concat([header, body]);
  }

  /** Appends an encoded record and fsyncs it. */
  append(record: Buffer): Promise<void> {
    return this.exclusive(() => this.appendNow(record));
  }

  /** The oldest record not yet released, or undefined when the spool is empty. */
  peek(): Promise<SpoolRecord<T> | undefined> {
    return this.exclusive(() => this.peekNow());
  }

  /** Marks the record returned by `peek` as stored. Its segment is deleted once all its records are. */
  release(record: SpoolRecord<T>): Promise<void> {
    return this.exclusive(() => this.releaseNow(record));
  }

  private exclusive<R>(operation: () => Promise<R>): Promise<R> {
    const result = this.turn.then(operation);
    this.turn = result.catch(() => {});
    return result;
  }

  private async appendNow(record: Buffer): Promise<void> {
    const writer = await this.writableSegment(record.length);
    try {
      await writer.handle.write(record);
      await writer.handle.datasync();
    } catch (err) {
      // Part of the record may be in the segment. Reading stops at a torn record, so nothing may follow
      // it there: the next record (this one, retried) starts a new segment.
      await this.closeWriter().catch(() => {});
      throw err;
    }
    const segment = this.segments.find((s) => s.number === writer.number)!;
    segment.bytes += record.length;
    this.totalBytes += record.length;
  }

  private async peekNow(): Promise<SpoolRecord<T> | undefined> {
    for (;;) {
      if (this.reading && this.reading.next < this.reading.records.length) return this.reading.records[this.reading.next];
      if (this.reading) await this.dropSegment(this.reading.number);
      const oldest = this.segments[0];
      if (oldest === undefined) return undefined;
      // Never read the segment that is still being written: close it so it is complete.
      if (this.writer?.number === oldest.number) await this.closeWriter();
      this.reading = { number: oldest.number, records: await this.readSegment(oldest.number), next: 0 };
    }
  }

  private async releaseNow(record: SpoolRecord<T>): Promise<void> {
    if (!this.reading || this.reading.number !== record.segment || this.reading.records[this.reading.next] !== record) {
      throw new Error('spool records must be released in order');
    }
    this.reading.next++;
    if (this.reading.next >= this.reading.records.length) await this.dropSegment(this.reading.number);
  }

  /** Age of the oldest record, for the "how far behind is the store" alarm. */
  async oldestAt(): Promise<number | undefined> {
    return (await this.peek())?.at;
  }

  close(): Promise<void> {
    return this.exclusive(() => this.closeWriter());
  }

  private async writableSegment(recordBytes: number): Promise<{ number: number; handle: FileHandle }> {
    const current = this.writer && this.segments.find((s) => s.number === this.writer!.number);
    if (this.writer && current && current.bytes + recordBytes <= this.segmentBytes) return this.writer;
    await this.closeWriter();
    const number = (this.segments.at(-1)?.number ?? 0) + 1;
    const handle = await open(this.segmentPath(number), 'a', 0o600);
    this.segments.push({ number, bytes: 0 });
    this.writer = { number, handle };
    return this.writer;
  }

  private async closeWriter(): Promise<void> {
    const writer = this.writer;
    this.writer = undefined;
    await writer?.handle.close();
  }

  private async readSegment(number: number): Promise<SpoolRecord<T>[]> {
    const data = await readFile(this.segmentPath(number));
    const records: SpoolRecord<T>[] = [];
    let offset = 0;
    while (offset + HEADER_BYTES <= data.length) {
      const length = data.readUInt32BE(offset);
      const checksum = data.readUInt32BE(offset + 4);
      const body = data.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + length);
      if (body.length < length || crc32(body) !== checksum) break; // torn tail: never acknowledged
      const parsed = JSON.parse(body.toString('utf8')) as { at: number; items: T[] };
      records.push({ segment: number, index: records.length, at: parsed.at, items: parsed.items });
      offset += HEADER_BYTES + length;
    }
    return records;
  }

  private async dropSegment(number: number): Promise<void> {
    if (this.writer?.number === number) await this.closeWriter();
    await rm(this.segmentPath(number), { force: true });
    const index = this.segments.findIndex((s) => s.number === number);
    if (index >= 0) {
      this.totalBytes -= this.segments[index]!.bytes;
      this.segments.splice(index, 1);
    }
    if (this.reading?.number === number) this.reading = undefined;
  }

  private segmentPath(number: number): string {
    return join(this.dir, `${String(number).padStart(12, '0')}.seg`);
  }
}
