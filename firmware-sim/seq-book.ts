/**
 * Sequence numbers that survive a simulator restart, like a device's counter in flash. Seqs are
 * reserved in blocks and the reservation is saved before any seq of the block is used, so a crash can
 * skip seqs (a gap, counted as missing) but never reuse one (which ingest would refuse as a replay).
 * One file for the whole fleet; reservations made in the same moment share one write, and a device
 * needs one only every 1,000 readings: cheap for 10,000 devices.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

const BLOCK = 1000;

export class SeqBook {
  private reserved: Record<string, number> = {};
  private next: Record<string, number> = {};
  private saving: Promise<void> = Promise.resolve();
  private dirty = false;

  private constructor(private readonly path: string) {}

  static async open(path: string): Promise<SeqBook> {
    const book = new SeqBook(path);
    const text = await readFile(path, 'utf8').catch(() => '{}');
    book.reserved = JSON.parse(text) as Record<string, number>;
    // Start every device above anything it may have used before the restart.
    book.next = { ...book.reserved };
    await mkdir(dirname(path), { recursive: true });
    return book;
  }

  /**
   * The next seq of a device; reserves (and saves) a new block first when needed. Every caller waits
   * for the writes queued so far, so no seq is used before its block is on disk, and callers resume in
   * the order they asked.
   */
  async take(device: string): Promise<number> {
    const seq = (this.next[device] ?? 0) + 1;
    this.next[device] = seq;
    if (seq > (this.reserved[device] ?? 0)) {
      this.reserved[device] = seq - 1 + BLOCK;
      this.dirty = true;
      // Reservations made while a write is queued share it: write() saves everything dirty.
      this.saving = this.saving.then(() => this.write());
    }
    await this.saving;
    return seq;
  }

  private async write(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const temp = `${this.path}.tmp`;
    await writeFile(temp, JSON.stringify(this.reserved), { mode: 0o600 });
    await rename(temp, this.path);
  }

  async close(): Promise<void> {
    await this.saving;
  }
}
