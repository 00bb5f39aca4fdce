/**
 * What became of each registered device's messages: readings accepted (stored), readings that were
 * duplicates (acknowledged again without a write), and messages rejected, by reason. The pipeline counts
 * a message once its outcome is final, when its PUBACK is due (its readings durable, its quarantine
 * entry fsynced), so a message redelivered after a crash is not counted twice. Only devices in the
 * registry are counted: a flood of made-up ids creates no state and no topics.
 *
 * Counting is O(1) per message and allocates nothing per reading (ingest handles ~30,000 readings/s):
 * a map lookup and an addition. Once a second (`tick`) the counts that changed are written to
 * `counts.json` in ingest's folder (temporary file, fsync, rename: a crash leaves the old file or the new
 * one, never half of one) and only then published, retained, on pipeline/counts/{device}. Published counts
 * are therefore never ahead of the file, so they never go backwards across a restart.
 *
 * What a kill -9 costs: the counts of the last second or so (since the last tick), for messages that
 * were acknowledged meanwhile. Acceptable for counts (the readings themselves are durable; the alerts
 * component reads an increase over a window), and said in docs/OPERATIONS.md. A clean stop loses nothing.
 */
import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { RejectReason } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { DeviceCountsMessageSchema, PROTOCOL_VERSION, type DeviceCountsMessage } from '../core/schemas.ts';

export const COUNTS_FILE = 'counts.json';
/** How often changed counts are written and published. */
export const COUNTS_INTERVAL_MS = 1000;

/** The file: every counted device's message as last written (a file from outside: parsed, never trusted). */
const CountsFileSchema = z.object({ devices: z.array(DeviceCountsMessageSchema).max(10_000_000) });

interface Tally {
  accepted: number;
  duplicates: number;
  rejected: Partial<Record<RejectReason, number>>;
  since: number;
  /** Changed since the last write. */
  dirty: boolean;
}

export class DeviceCounts {
  private readonly devices = new Map<string, Tally>();
  /** Devices counted since the last write. */
  private readonly changed = new Set<string>();
  /** Messages written and not yet published (the broker was not reachable), by device. */
  private readonly unpublished = new Map<string, DeviceCountsMessage>();
  private ticking: Promise<void> | undefined;

  private constructor(
    private readonly dir: string,
    private readonly now: () => number,
    private readonly logger: Logger | undefined,
  ) {}

  /** Loads `counts.json` (absent: counting begins now; unreadable: logged, and counting begins anew). */
  static async open(dir: string, options: { now?: () => number; logger?: Logger } = {}): Promise<DeviceCounts> {
    const counts = new DeviceCounts(dir, options.now ?? Date.now, options.logger);
    let text: string | undefined;
    try {
      text = await readFile(join(dir, COUNTS_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text === undefined) return counts;
    let parsed: ReturnType<typeof CountsFileSchema.safeParse> | undefined;
    try {
      parsed = CountsFileSchema.safeParse(JSON.parse(text));
    } catch {
      parsed = undefined;
    }
    if (parsed?.success !== true) {
      options.logger?.error({ file: join(dir, COUNTS_FILE) }, 'device counts file unreadable; counting begins anew (since = now)');
      return counts;
    }
    for (const m of parsed.data.devices) {
      counts.devices.set(m.device, { accepted: m.accepted, duplicates: m.duplicates, rejected: { ...m.rejected }, since: m.since, dirty: false });
      // Published again on start: a broker that lost its retained messages gets them back.
      counts.unpublished.set(m.device, m);
    }
    return counts;
  }

  private tally(device: string): Tally {
    let tally = this.devices.get(device);
    if (tally === undefined) {
      tally = { accepted: 0, duplicates: 0, rejected: {}, since: this.now(), dirty: false };
      this.devices.set(device, tally);
    }
    if (!tally.dirty) {
      tally.dirty = true;
      this.changed.add(device);
    }
    return tally;
  }

  /** `readings` of a registered device are durable in the store (or the spool). */
  accepted(device: string, readings: number): void {
    this.tally(device).accepted += readings;
  }

  /** `readings` of a registered device were acknowledged again, not written (a redelivery). */
  duplicates(device: string, readings: number): void {
    this.tally(device).duplicates += readings;
  }

  /** A registered device's message (or store-refused point) was quarantined with `reason`. */
  rejected(device: string, reason: RejectReason): void {
    const rejected = this.tally(device).rejected;
    rejected[reason] = (rejected[reason] ?? 0) + 1;
  }

  /** The device's counts now (undefined: never counted). */
  message(device: string, at = this.now()): DeviceCountsMessage | undefined {
    const t = this.devices.get(device);
    return t === undefined ? undefined : { v: PROTOCOL_VERSION, device, accepted: t.accepted, duplicates: t.duplicates, rejected: { ...t.rejected }, since: t.since, at };
  }

  /**
   * Writes the counts when any changed, then hands each changed device's message, as written, to
   * `publish` (when `canPublish`; otherwise they wait for a later tick). One tick at a time; never rejects.
   */
  tick(publish: (message: DeviceCountsMessage) => void, canPublish: () => boolean): Promise<void> {
    this.ticking ??= this.runTick(publish, canPublish).finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async runTick(publish: (message: DeviceCountsMessage) => void, canPublish: () => boolean): Promise<void> {
    if (this.changed.size > 0) {
      // A snapshot: what is counted while the file is written waits for the next tick.
      const at = this.now();
      const snapshot = new Map<string, DeviceCountsMessage>();
      for (const device of this.devices.keys()) snapshot.set(device, this.message(device, at)!);
      const changed = [...this.changed];
      this.changed.clear();
      for (const device of changed) this.devices.get(device)!.dirty = false;
      try {
        await this.write([...snapshot.values()]);
      } catch (err) {
        this.logger?.error({ err: (err as Error).message }, 'device counts not written; retrying next second');
        for (const device of changed) this.tally(device);
        return;
      }
      for (const device of changed) this.unpublished.set(device, snapshot.get(device)!);
    }
    if (this.unpublished.size === 0 || !canPublish()) return;
    for (const message of this.unpublished.values()) publish(message);
    this.unpublished.clear();
  }

  /** Writes what is counted (a clean stop loses nothing). */
  async close(): Promise<void> {
    await this.ticking;
    if (this.changed.size === 0) return;
    const at = this.now();
    await this.write([...this.devices.keys()].map((device) => this.message(device, at)!));
    this.changed.clear();
  }

  private async write(devices: DeviceCountsMessage[]): Promise<void> {
    const path = join(this.dir, COUNTS_FILE);
    const temporary = `${path}.tmp`;
    const handle = await open(temporary, 'w', 0o600);
    try {
      await handle.writeFile(JSON.stringify({ devices }), 'utf8');
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  }
}
