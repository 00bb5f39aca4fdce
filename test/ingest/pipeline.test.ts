/**
 * The pipeline's rules, driven message by message. The store here is a stand-in that can be told to
 * fail or refuse a point, because the rules (ack only when durable, spool while down, quarantine the
 * refused point alone, pause when the spool is full) must be checked at exact moments; the same rules
 * are exercised against a real influxd in the ingest integration tests.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SensorpipeError } from '../../core/errors.ts';
import { createLogger } from '../../core/logger.ts';
import { Registry } from '../../core/registry.ts';
import { signTelemetry } from '../../core/signature.ts';
import { topics } from '../../core/topics.ts';
import { createIngestMetrics } from '../../ingest/metrics.ts';
import { IngestPipeline, type PointWriter } from '../../ingest/pipeline.ts';
import { Quarantine, readQuarantine } from '../../ingest/quarantine.ts';
import { SeqStore } from '../../ingest/seq-store.ts';
import { Spool } from '../../ingest/spool.ts';
import type { StorePoint, WriteResult } from '../../store/port.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

class ControllableStore implements PointWriter {
  stored = new Map<string, StorePoint>();
  down = false;
  refuseMetric: string | undefined;
  writes = 0;
  async write(points: StorePoint[]): Promise<WriteResult> {
    this.writes++;
    if (this.down) throw new SensorpipeError('STORE_UNAVAILABLE', 'connection refused');
    const refused: { index: number; message: string }[] = [];
    points.forEach((p, index) => {
      if (p.metric === this.refuseMetric) refused.push({ index, message: 'field type conflict' });
      else this.stored.set(`${p.device}|${p.metric}|${p.ts}`, p);
    });
    return { written: points.length - refused.length, refused };
  }
}

let dir: TempDir;
let store: ControllableStore;
let pipeline: IngestPipeline;
let seqs: SeqStore;
let quarantine: Quarantine;
let spool: Spool<StorePoint>;
const metrics = () => createIngestMetrics();
const registry = new Registry();
const creds = registry.add('dev-1');
const key = Buffer.from((creds.signing as { key: string }).key, 'base64');
const T0 = Date.now();

function message(seq: number, values: Record<string, number> = { t: seq }) {
  const payload = JSON.stringify(signTelemetry({ v: 1, device: 'dev-1', readings: [{ seq, ts: T0 + seq, values }] }, { alg: 'hmac-sha256', key }));
  const state = { acked: false };
  return { state, incoming: { topic: topics.telemetry('dev-1'), payload: Buffer.from(payload), ack: () => void (state.acked = true) } };
}

async function setup(spoolMaxBytes = 10_000_000): Promise<void> {
  dir = await tempDir();
  store = new ControllableStore();
  seqs = await SeqStore.open(dir.path, { gapWindow: 1000, redeliveryWindow: 8 });
  quarantine = await Quarantine.open(join(dir.path, 'q'), { maxEntries: 100 });
  spool = await Spool.open<StorePoint>(join(dir.path, 'spool'), { maxBytes: spoolMaxBytes });
  pipeline = new IngestPipeline(
    { registry: () => registry, seqs, quarantine, spool, store, publishVerified: () => {}, metrics: metrics(), logger: createLogger({ level: 'silent' }) },
    { batchMaxPoints: 3, batchMaxDelayMs: 20, bounds: { maxFutureMs: 60_000, maxAgeMs: 3_600_000 }, quarantinePayloadBytes: 1024, retryMinMs: 20, retryMaxMs: 50 },
  );
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

beforeEach(() => setup());
afterEach(async () => {
  await pipeline.close();
  await seqs.close();
  await quarantine.close();
  await spool.close();
  await dir.remove();
});

describe('IngestPipeline', () => {
  it('acknowledges a message only after its readings are stored', async () => {
    const m = message(1);
    pipeline.handle(m.incoming);
    expect(m.state.acked).toBe(false);
    await until(() => m.state.acked, 'ack');
    expect(store.stored.get(`dev-1|t|${T0 + 1}`)?.value).toBe(1);
  });

  it('spools while the store is down, acknowledges from the spool, and replays in order once it is back', async () => {
    store.down = true;
    const messages = Array.from({ length: 10 }, (_, i) => message(i + 1));
    for (const m of messages) pipeline.handle(m.incoming);
    await until(() => messages.every((m) => m.state.acked), 'acks from the spool');
    expect(store.stored.size).toBe(0);
    expect(spool.isEmpty).toBe(false);
    store.down = false;
    await until(() => store.stored.size === 10, 'replay');
    await until(() => spool.isEmpty, 'spool empty');
  });

  it('quarantines a point the store refuses, alone, and stores the rest of its batch', async () => {
    store.refuseMetric = 'bad';
    const m = message(1, { t: 1, bad: 2, h: 3 });
    pipeline.handle(m.incoming);
    await until(() => m.state.acked, 'ack');
    expect([...store.stored.keys()].sort()).toEqual([`dev-1|h|${T0 + 1}`, `dev-1|t|${T0 + 1}`]);
    const { entries } = await readQuarantine(join(dir.path, 'q'));
    expect(entries).toMatchObject([{ reason: 'POINT_REJECTED_BY_STORE', device: 'dev-1' }]);
  });

  it('quarantines a rejected message, then acknowledges it, and drops a redelivery without writing', async () => {
    const forged = message(1);
    forged.incoming.payload = Buffer.from(forged.incoming.payload.toString().replace('"t":1', '"t":2'));
    pipeline.handle(forged.incoming);
    await until(() => forged.state.acked, 'ack of the rejected message');
    expect((await readQuarantine(join(dir.path, 'q'))).entries).toMatchObject([{ reason: 'READING_BAD_SIGNATURE' }]);

    const good = message(2);
    pipeline.handle(good.incoming);
    await until(() => good.state.acked, 'ack');
    const writes = store.writes;
    const again = message(2);
    pipeline.handle(again.incoming);
    await until(() => again.state.acked, 'ack of the redelivery');
    expect(store.writes).toBe(writes);
  });

  it('stops acknowledging when the spool is full, raises the alarm, and resumes when it drains', async () => {
    await pipeline.close();
    await dir.remove();
    await setup(400); // room for about one spooled batch
    store.down = true;
    const messages = Array.from({ length: 12 }, (_, i) => message(i + 1));
    for (const m of messages) pipeline.handle(m.incoming);
    await until(() => pipeline.spoolFull, 'spool full');
    expect(messages.some((m) => !m.state.acked)).toBe(true);
    store.down = false;
    await until(() => messages.every((m) => m.state.acked), 'all acked');
    await until(() => store.stored.size === 12, 'everything stored');
    expect(pipeline.spoolFull).toBe(false);
  });
});
