/**
 * Stopping a fleet when the acknowledgements it would wait for cannot come: a connection already gone
 * with readings in flight, a connection that goes while a graceful stop waits, and a device our broker
 * disconnects for its foreign-topic publishes (which must also come back and go on delivering).
 */
import type { AedesOptions } from 'aedes';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseTopic } from '../../core/topics.ts';
import { provisionFleet, startFleet, type Fleet, type FleetSummary } from '../../firmware-sim/index.ts';
import { startBareAedes, type BareBroker } from '../../harness/aedes.ts';
import { startTestBroker } from '../../harness/broker.ts';
import { testFleetOptions } from '../../harness/fleet.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await dir.remove();
});

describe('stopping a fleet whose acknowledgements cannot come', () => {
  // A broker that takes telemetry and never acknowledges it: every reading a device sends stays in flight.
  const holdTelemetry: AedesOptions['authorizePublish'] = (_client, packet, done) => {
    if (parseTopic(packet.topic)?.kind !== 'telemetry') done(null);
  };
  const inFlight = (fleet: Fleet) => fleet.devices.every((d) => d.report().sent >= 3);
  let broker: BareBroker | undefined;
  let fleet: Fleet | undefined;
  afterEach(async () => {
    await fleet?.stop(false);
    await broker?.close();
  });
  // Provisioned first, so that the fleet starts at once (it has no new devices to wait for).
  const provisioned = async (options: Parameters<typeof testFleetOptions>[1]) => {
    const fleetOptions = testFleetOptions(dir.path, options);
    await provisionFleet(fleetOptions);
    return fleetOptions;
  };
  const closeBroker = async () => {
    const closing = broker!.close();
    broker = undefined;
    await closing;
  };

  it('returns once the connection is gone with readings in flight, and counts none of them as acknowledged', async () => {
    broker = await startBareAedes(0, { authorizePublish: holdTelemetry });
    const started = (fleet = await startFleet(await provisioned({ devices: 2, url: broker.url })));
    await waitFor(() => inFlight(started), 'readings in flight');
    await closeBroker();
    await waitFor(() => started.devices.every((d) => !d.connected), 'devices see the broker gone');
    fleet = undefined;
    const summary = await started.stop();
    expect(summary.sent).toBeGreaterThanOrEqual(6);
    expect(summary.acked).toBe(0);
  });

  it('waits for them while the connection lasts, and returns when it closes', async () => {
    broker = await startBareAedes(0, { authorizePublish: holdTelemetry });
    const started = (fleet = await startFleet(await provisioned({ devices: 2, url: broker.url })));
    await waitFor(() => inFlight(started), 'readings in flight');
    fleet = undefined;
    let stopped = false;
    const stopping = started.stop().then((summary) => {
      stopped = true;
      return summary;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(stopped, 'a graceful stop waits for the PUBACKs of what is in flight').toBe(false);
    await closeBroker();
    expect((await stopping).acked).toBe(0);
  });
});

describe('a device our broker disconnects for publishing on a foreign topic', () => {
  it('comes back, goes on delivering its good readings, and stops', async () => {
    const options = testFleetOptions(dir.path, { devices: 2, faults: 'foreign-topic@sim-0000', intervalMs: 20 });
    await provisionFleet(options);
    const broker = await startTestBroker({ registryPath: options.registryPath, publishRate: 1000, publishBurst: 1000 });
    try {
      const fleet = await startFleet({ ...options, url: broker.url });
      const device = fleet.devices[0]!;
      let summary: FleetSummary;
      try {
        await waitFor(() => (device.report().faultMessages['foreign-topic']?.count ?? 0) >= 3, 'three foreign-topic publishes', 10_000);
        const ackedBefore = device.report().acked;
        await waitFor(() => device.report().acked >= ackedBefore + 20, 'good readings acknowledged after the refusals', 10_000);
      } finally {
        summary = await fleet.stop();
      }
      // Our broker closes the connection of a device that publishes outside its topics [MQTT-3.3.5-2].
      expect(summary.perDevice[0]!.connects).toBeGreaterThanOrEqual(3);
      expect(summary.perDevice[1]!.connects).toBe(1);
      // Nothing in flight at a disconnection was lost: it was resent, and every seq up to the last one
      // acknowledged was acknowledged (only readings still in flight or buffered at the stop are not).
      for (const d of summary.perDevice) {
        const seqs = d.ackedReadings.map(([seq]) => seq).sort((a, b) => a - b);
        expect(seqs, `${d.id}: no seq missing`).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
      }
    } finally {
      await broker.close();
    }
  });
});
