/**
 * The soak's duplicate and value checks against what a real influxd holds, written through the store
 * adapter ingest uses: a reading written again at another time shows as its (device, seq) held twice —
 * without the seq field InfluxDB would show nothing, since a rewrite of one series and time overwrites
 * itself — a rewrite in place shows nothing, a second tag set at one time shows as a (device, ts) held
 * twice, and a value that differs from the acknowledged one is named.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { parseAckedLog, reconcileReadings, type SimReport } from '../../soak/reconcile.ts';
import { readStored } from '../../soak/stored.ts';
import { openInfluxStore } from '../../store/influx1.ts';
import type { StorePoint, TimeSeriesStore } from '../../store/port.ts';

let influx: InfluxServer;
let store: TimeSeriesStore;
const database = `stored_${randomUUID().slice(0, 8)}`;
const T0 = Date.now() - 60_000;
const meta = { site: 'north' };

beforeAll(async () => {
  influx = await startInfluxd();
  store = await openInfluxStore({ url: influx.url, database });
}, 60_000);
afterAll(async () => {
  await store?.close();
  await influx?.close();
});

/** The points ingest writes for one reading. */
const reading = (device: string, seq: number, ts: number, values: Record<string, number>, m = meta): StorePoint[] =>
  Object.entries(values).map(([metric, value]) => ({ device, metric, ts, value, seq, meta: m }));

function simReport(devices: string[], perDevice: number): SimReport {
  return { sent: devices.length * perDevice, acked: devices.length * perDevice, perDevice: devices.map((id) => ({ id, faults: [], sent: perDevice, acked: perDevice, buffered: 0, faultMessages: {} })) };
}

it('finds a reading written twice, at another time or under another tag set, and a value that differs', async () => {
  const values = (seq: number) => ({ temperature: 20 + seq / 10, humidity: 40 });
  const log: string[] = [];
  for (const device of ['clean', 'moved-seq', 'two-tags', 'other-value']) {
    for (const seq of [1, 2, 3]) {
      await store.write(reading(device, seq, T0 + seq * 1000, values(seq)));
      log.push(`${device} ${seq} ${T0 + seq * 1000} ${JSON.stringify(values(seq))}`);
    }
  }
  // clean: a redelivery rewritten in place, as ingest may after a crash: one copy, nothing to see.
  await store.write(reading('clean', 2, T0 + 2000, values(2)));
  // moved-seq: seq 2 written again 7 s later (what a duplicate write of a reading is).
  await store.write(reading('moved-seq', 2, T0 + 9000, values(2)));
  // two-tags: seq 3 written again after the device's metadata changed: a second series at that time.
  await store.write(reading('two-tags', 3, T0 + 3000, values(3), { site: 'south' }));
  // other-value: what is stored at seq 1's time is not what the device sent.
  await store.write(reading('other-value', 1, T0 + 1000, { temperature: 99, humidity: 40 }));

  const devices = ['clean', 'moved-seq', 'two-tags', 'other-value'];
  const stored = await readStored(influx.url, database, devices, T0 - 3_600_000, T0 + 3_600_000, T0 - 60_000);
  const sim = simReport(devices, 3);
  // moved-seq's extra copy is stored unacknowledged: allow it as in flight, so that only the seq check catches it.
  sim.perDevice[1]!.sent = 4;
  const result = reconcileReadings(sim, parseAckedLog(log.join('\n')), stored, { from: T0 - 1000, to: T0 + 60_000, origin: T0 });
  expect(result).toMatchObject({ acknowledged: 12, lost: 0, duplicatedBySeq: 1, duplicatedByTs: 1, duplicated: 2, mismatched: 1, unexplained: 0 });
  expect(result.examples.duplicated).toEqual(expect.arrayContaining([expect.stringMatching(/^moved-seq seq 2 stored at 2 times/), expect.stringMatching(/^two-tags t=3\.0s: 2 copies/)]));
  expect(result.examples.mismatched).toEqual(['other-value seq 1 t=1.0s: temperature sent 20.1, stored 99']);
  expect(stored.get('clean')?.get(T0 + 2000)).toEqual({ copies: 1, values: values(2), seqs: [2] });
});
