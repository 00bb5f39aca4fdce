/**
 * The pipeline's rules, driven message by message. The store here is a stand-in that can be told to
 * fail or refuse a point, because the rules (ack only when durable, spool while down, quarantine the
 * refused point alone, pause when the spool is full) must be checked at exact moments; the same rules
 * are exercised against a real influxd in the ingest integration tests.
 */
import { rm, mkdir, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SensorpipeError } from '../../core/errors.ts';
import { createLogger } from '../../core/logger.ts';
import { Registry } from '../../core/registry.ts';
import { signTelemetry } from '../../core/signature.ts';
import { topics } from '../../core/topics.ts';
import { createIngestMetrics, type IngestMetrics } from '../../ingest/metrics.ts';
import { IngestPipeline, type PointWriter } from '../../ingest/pipeline.ts';
import { Quarantine, readQuarantine } from '../../ingest/quarantine.ts';
import { SeqStore } from '../../ingest/seq-store.ts';
import { Spool } from '../../ingest/spool.ts';
import type { QueryResult, RangeQuery, StorePoint, WriteResult } from '../../store/port.ts';
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
  async query(q: RangeQuery): Promise<QueryResult> {
    if (this.down) throw new SensorpipeError('STORE_UNAVAILABLE', 'connection refused');
    const series = (q.metrics ?? []).map((metric) => ({
      metric,
      points: [...this.stored.values()].filter((p) => p.device === q.device && p.metric === metric && p.ts >= q.from && p.ts < q.to).map((p) => ({ ts: p.ts, value: p.value })),
    }));
    return { device: q.device, from: q.from, to: q.to, mode: 'raw', truncated: false, series };
  }
}

let dir: TempDir;
let store: ControllableStore;
let pipeline: IngestPipeline;
let seqs: SeqStore;
let quarantine: Quarantine;
let spool: Spool<StorePoint>;
let metrics: IngestMetrics;
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
  seqs = await SeqStore.open(dir.path, { gapWindow: 1000, redeliveryWindow: 8, fleetWindow: 16 });
  quarantine = await Quarantine.open(join(dir.path, 'q'), { maxEntries: 100, retryMinMs: 20, retryMaxMs: 50 });
  spool = await Spool.open<StorePoint>(join(dir.path, 'spool'), { maxBytes: spoolMaxBytes });
  metrics = createIngestMetrics();
  pipeline = new IngestPipeline(
    { registry: () => registry, seqs, quarantine, spool, store, publishVerified: () => {}, metrics, logger: createLogger({ level: 'silent' }) },
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
    expect((await metrics.duplicates.get()).values[0]?.value).toBe(1);
  });

  it('asks the store about a copy outside the window: duplicate, replay, or unverified while it is down', async () => {
    const sent = Array.from({ length: 30 }, (_, i) => message(i + 1));
    for (const m of sent) pipeline.handle(m.incoming);
    await until(() => sent.every((m) => m.state.acked), 'acks');
    const outcome = async (name: string) => (await metrics.outsideWindow.get()).values.find((v) => v.labels.outcome === name)?.value ?? 0;

    const copy = message(1); // byte-identical to the first message, 29 messages later (windows: 8 and 16)
    pipeline.handle(copy.incoming);
    await until(() => copy.state.acked, 'ack of the copy');
    expect(await outcome('duplicate')).toBe(1);
    expect((await metrics.duplicates.get()).values[0]?.value).toBe(1);

    const replay = message(2, { t: 99 });
    pipeline.handle(replay.incoming);
    await until(() => replay.state.acked, 'ack of the replay');
    expect(await outcome('replay')).toBe(1);
    expect((await readQuarantine(join(dir.path, 'q'))).entries).toMatchObject([{ reason: 'READING_REPLAYED', device: 'dev-1' }]);

    store.down = true;
    const unverifiable = message(3, { t: 99 });
    pipeline.handle(unverifiable.incoming);
    await until(() => unverifiable.state.acked, 'ack while the store is down');
    expect(await outcome('unverified')).toBe(1);
    expect((await readQuarantine(join(dir.path, 'q'))).entries).toHaveLength(1);
    expect(store.stored.get(`dev-1|t|${T0 + 3}`)?.value).toBe(3);
  });

  it('keeps a rejected message unacknowledged while its quarantine entry cannot be written, then acknowledges it', async () => {
    // The quarantine's folder replaced by a file: every write (and making the folder again) fails.
    await rm(join(dir.path, 'q'), { recursive: true, force: true });
    await writeFile(join(dir.path, 'q'), 'not a folder');
    const forged = message(1);
    forged.incoming.payload = Buffer.from(forged.incoming.payload.toString().replace('"t":1', '"t":2'));
    pipeline.handle(forged.incoming);
    const good = message(2);
    pipeline.handle(good.incoming);
    await new Promise((resolve) => setTimeout(resolve, 300)); // several retries
    expect(forged.state.acked).toBe(false);
    expect(good.state.acked).toBe(false); // its batch flushes the quarantine too, behind the failing flush
    await rm(join(dir.path, 'q'));
    await until(() => forged.state.acked && good.state.acked, 'acks once the quarantine is writable');
    expect((await readQuarantine(join(dir.path, 'q'))).entries).toMatchObject([{ reason: 'READING_BAD_SIGNATURE' }]);
  });

  it('retries a batch whose seq-log write fails, and acknowledges it only once the line is written', async () => {
    await seqs.close();
    await mkdir(join(dir.path, 'seq.log')); // a folder where the log should be: opening it fails
    const m = message(1);
    pipeline.handle(m.incoming);
    await until(() => store.stored.size === 1, 'stored');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(m.state.acked).toBe(false);
    await rm(join(dir.path, 'seq.log'), { recursive: true });
    await until(() => m.state.acked, 'ack once the log is writable');
    expect(await readFile(join(dir.path, 'seq.log'), 'utf8')).toContain('"s":[1]');
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
