/**
 * Every reading ingest stores carries its seq into the store (store/SCHEMA.md), whether it is written
 * at once or waits in the disk spool while the store is down: the soak counts (device, seq) pairs held
 * at two times as duplicates, which only works if the seq arrives. A real embedded store, behind a
 * switch that makes its writes fail the way an unreachable store's do.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { SensorpipeError } from '../../core/errors.ts';
import { createLogger } from '../../core/logger.ts';
import { Registry } from '../../core/registry.ts';
import { signTelemetry } from '../../core/signature.ts';
import { topics } from '../../core/topics.ts';
import { createIngestMetrics } from '../../ingest/metrics.ts';
import { IngestPipeline, type PointWriter } from '../../ingest/pipeline.ts';
import { Quarantine } from '../../ingest/quarantine.ts';
import { SeqStore } from '../../ingest/seq-store.ts';
import { Spool } from '../../ingest/spool.ts';
import { openEmbeddedStore } from '../../store/embedded.ts';
import type { StorePoint, TimeSeriesStore } from '../../store/port.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const registry = new Registry();
const key = Buffer.from((registry.add('dev-1').signing as { key: string }).key, 'base64');
const T0 = Date.now() - 60_000;

let dir: TempDir;
let store: TimeSeriesStore;
let down = false;
let spool: Spool<StorePoint>;
let seqs: SeqStore;
let quarantine: Quarantine;
let pipeline: IngestPipeline;
const acked: number[] = [];

function handle(seq: number): void {
  const readings = [{ seq, ts: T0 + seq * 1000, values: { temperature: 20 + seq, humidity: 40 } }];
  const payload = JSON.stringify(signTelemetry({ v: 1, device: 'dev-1', readings }, { alg: 'hmac-sha256', key }));
  pipeline.handle({ topic: topics.telemetry('dev-1'), payload: Buffer.from(payload), ack: () => acked.push(seq) });
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  // Generous: the machine is shared; a passing run takes a fraction of a second.
  const deadline = Date.now() + 30_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

beforeEach(async () => {
  dir = await tempDir();
  store = await openEmbeddedStore({ path: join(dir.path, 'store.duckdb') });
  const writer: PointWriter = {
    write: (points) => (down ? Promise.reject(new SensorpipeError('STORE_UNAVAILABLE', 'connection refused')) : store.write(points)),
    query: (query) => store.query(query),
  };
  const logger = createLogger({ level: 'silent' });
  seqs = await SeqStore.open(dir.path, { gapWindow: 1000, redeliveryWindow: 8, fleetWindow: 16 });
  quarantine = await Quarantine.open(join(dir.path, 'q'), { maxEntries: 100, retryMinMs: 20, retryMaxMs: 50, logger });
  spool = await Spool.open<StorePoint>(join(dir.path, 'spool'), { maxBytes: 10_000_000 });
  pipeline = new IngestPipeline(
    { registry: () => registry, seqs, quarantine, spool, store: writer, publishVerified: () => {}, metrics: createIngestMetrics(), logger },
    { batchMaxPoints: 4, batchMaxDelayMs: 20, bounds: { maxFutureMs: 60_000, maxAgeMs: 3_600_000 }, quarantinePayloadBytes: 1024, retryMinMs: 20, retryMaxMs: 50 },
  );
});

afterEach(async () => {
  down = false;
  acked.length = 0;
  await pipeline.close();
  await seqs.close();
  await quarantine.close();
  await spool.close();
  await store.close();
  await dir.remove();
});

it("stores each reading's seq, written at once and replayed from the spool", async () => {
  handle(1);
  handle(2);
  await until(() => acked.length === 2, 'the first two acknowledged');
  down = true;
  handle(3);
  handle(4);
  await until(() => acked.length === 4 && !spool.isEmpty, 'the next two acknowledged from the spool');
  expect(await store.seqs('dev-1', T0, T0 + 10_000)).toHaveLength(2);
  down = false;
  await until(() => spool.isEmpty, 'the spool replayed');
  expect(await store.seqs('dev-1', T0, T0 + 10_000)).toEqual([1, 2, 3, 4].map((seq) => ({ ts: T0 + seq * 1000, seq })));
  expect(await store.count({ device: 'dev-1' })).toBe(8);
});
