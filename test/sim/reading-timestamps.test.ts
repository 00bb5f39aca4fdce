/**
 * A simulated device stamps each reading when it takes it, so its readings' timestamps rise with their
 * seqs however long the seq reservation takes. (They used to be stamped when the reservation came back:
 * a fleet's reservations share one file write, and under load — the soak's 600-device overload — a
 * device's readings waiting on the same write came back in the same millisecond, two readings with one
 * (device, ts), of which the store can keep only one.)
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Reading } from '../../core/schemas.ts';
import { startFleet } from '../../firmware-sim/index.ts';
import { SeqBook } from '../../firmware-sim/seq-book.ts';
import { startBareAedes, type BareBroker } from '../../harness/aedes.ts';
import { testFleetOptions } from '../../harness/fleet.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
let broker: BareBroker;
const take = SeqBook.prototype.take;

beforeEach(async () => {
  dir = await tempDir();
  broker = await startBareAedes();
});
afterEach(async () => {
  SeqBook.prototype.take = take;
  await broker.close();
  await dir.remove();
});

it("keeps a device's timestamps strictly rising with its seqs while seq reservations are slow", async () => {
  // Every reservation waits for one slow write, as they do when a big fleet starts at once.
  let open!: () => void;
  const slowWrite = new Promise<void>((resolve) => (open = resolve));
  SeqBook.prototype.take = async function (this: SeqBook, device: string) {
    const seq = await take.call(this, device);
    await slowWrite;
    return seq;
  };
  const acked = new Map<string, Reading[]>();
  const fleet = await startFleet({
    ...testFleetOptions(dir.path, { devices: 3, intervalMs: 20, url: broker.url }),
    registrySettleMs: 0,
    recordAckedReadings: false,
    onAcknowledged: (device, readings) => acked.set(device, [...(acked.get(device) ?? []), ...readings]),
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  open();
  await waitFor(() => [...acked.values()].every((r) => r.length >= 10), 'readings acknowledged');
  await fleet.stop();
  expect(acked.size).toBe(3);
  for (const [device, readings] of acked) {
    const bySeq = [...readings].sort((a, b) => a.seq - b.seq);
    for (let i = 1; i < bySeq.length; i++) expect(bySeq[i]!.ts, `${device} seq ${bySeq[i]!.seq}`).toBeGreaterThan(bySeq[i - 1]!.ts);
  }
});
