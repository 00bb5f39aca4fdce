/**
 * What a fleet remembers per reading. Tests want the seq and ts of every acknowledged reading; the demo
 * fleet of `sensorpipe start` runs for days and must not keep one entry per reading for ever. With
 * recording off, the counts and each device's acknowledged seq range stay exact and the lists stay
 * empty; with it on (the default), the lists hold exactly what the broker acknowledged. Checked against
 * the fleet's onAcknowledged hook, an independent account of every acknowledged reading.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Reading } from '../../core/schemas.ts';
import { startFleet } from '../../firmware-sim/index.ts';
import { startBareAedes, type BareBroker } from '../../harness/aedes.ts';
import { testFleetOptions } from '../../harness/fleet.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
let broker: BareBroker;
beforeEach(async () => {
  dir = await tempDir();
  broker = await startBareAedes();
});
afterEach(async () => {
  await broker.close();
  await dir.remove();
});

/** Two devices, one with a fault that carries seqs (bad signature), one that skips seqs (dropout). */
async function runFleet(record: boolean) {
  const options = testFleetOptions(dir.path, { devices: 2, faults: 'bad-signature@sim-0000,dropout@sim-0001', intervalMs: 20, url: broker.url });
  const acknowledged = new Map<string, Reading[]>();
  const fleet = await startFleet({
    ...options,
    registrySettleMs: 0, // a bare aedes lets everyone in: nothing to wait for
    ...(record ? {} : { recordAckedReadings: false, recordFaultSeqs: false }),
    onAcknowledged: (device, readings) => acknowledged.set(device, [...(acknowledged.get(device) ?? []), ...readings]),
  });
  await waitFor(() => fleet.summary().perDevice.every((d) => d.acked >= 40 && Object.values(d.faultMessages).some((f) => f.count >= 3)), 'readings and faults');
  const summary = await fleet.stop();
  return { summary, acknowledged };
}

function seqRange(readings: Reading[]): [number, number] {
  return [Math.min(...readings.map((r) => r.seq)), Math.max(...readings.map((r) => r.seq))];
}

describe('per-reading records of a fleet', () => {
  it('off (sensorpipe start): no list grows, and counts and seq ranges stay exact', async () => {
    const { summary, acknowledged } = await runFleet(false);
    expect(summary.acked).toBeGreaterThanOrEqual(80);
    for (const device of summary.perDevice) {
      const acked = acknowledged.get(device.id)!;
      expect(device.ackedReadings, device.id).toEqual([]);
      expect(device.acked, device.id).toBe(acked.length);
      expect(device.ackedSeqRange, device.id).toEqual(seqRange(acked));
      for (const fault of Object.values(device.faultMessages)) {
        expect(fault.count, device.id).toBeGreaterThanOrEqual(3);
        expect(fault.seqs, device.id).toEqual([]);
      }
    }
  });

  it('on (the default, for tests): every acknowledged reading and every fault seq is listed', async () => {
    const { summary, acknowledged } = await runFleet(true);
    for (const device of summary.perDevice) {
      const acked = acknowledged.get(device.id)!;
      expect(device.ackedReadings, device.id).toEqual(acked.map((r) => [r.seq, r.ts]));
      expect(device.ackedSeqRange, device.id).toEqual(seqRange(acked));
      for (const fault of Object.values(device.faultMessages)) expect(fault.seqs, device.id).toHaveLength(fault.count);
    }
  });
});
