/**
 * The pipeline's rules, driven message by message. The store here is a stand-in that can be told to
 * fail, refuse a point, or hold its writes, because the rules (ack only when durable, spool while down,
 * quarantine the refused point alone, pause when the spool is full) must be checked at exact moments;
 * the same rules are exercised against a real influxd in the ingest integration tests. The stand-in
 * keeps a point only once its write has resolved, as a real store does: a write still in flight has
 * stored nothing a crash would not lose.
 */
import { readFileSync } from 'node:fs';
import { rm, mkdir, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
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

/** Gates still shut when a test ends (it failed): opened before the pipeline closes, which waits for them. */
const gates: (() => void)[] = [];

/** A promise the test resolves when it chooses. */
function gate(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  gates.push(open);
  return { opened, open };
}

class ControllableStore implements PointWriter {
  stored = new Map<string, StorePoint>();
  down = false;
  refuseMetric: string | undefined;
  writes = 0;
  /** Writes called and not resolved yet. */
  inFlight = 0;
  /** While set, every write waits for it before it stores anything or answers. */
  held: Promise<void> | undefined;
  async write(points: StorePoint[]): Promise<WriteResult> {
    this.writes++;
    this.inFlight++;
    try {
      await this.held;
    } finally {
      this.inFlight--;
    }
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
/** What the pipeline and the quarantine logged, parsed (level 30 info, 40 warn, 50 error). */
let logLines: { level: number; msg: string }[];
const registry = new Registry();
const creds = registry.add('dev-1');
const key = Buffer.from((creds.signing as { key: string }).key, 'base64');
const T0 = Date.now();

/** A signed message of dev-1; `onAck` runs at the very moment the pipeline acknowledges it. */
function message(seq: number, values: Record<string, number> = { t: seq }, onAck: () => void = () => {}) {
  const payload = JSON.stringify(signTelemetry({ v: 1, device: 'dev-1', readings: [{ seq, ts: T0 + seq, values }] }, { alg: 'hmac-sha256', key }));
  const state = { acked: false };
  const ack = () => {
    onAck();
    state.acked = true;
  };
  return { state, incoming: { topic: topics.telemetry('dev-1'), payload: Buffer.from(payload), ack } };
}

function capturingLogger() {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line) logLines.push(JSON.parse(line) as { level: number; msg: string });
      callback();
    },
  });
  return createLogger({ level: 'info', destination });
}

/** Log lines with this message so far. */
function logged(msg: string): number {
  return logLines.filter((line) => line.msg === msg).length;
}

async function setup(spoolMaxBytes = 10_000_000): Promise<void> {
  dir = await tempDir();
  store = new ControllableStore();
  logLines = [];
  const logger = capturingLogger();
  seqs = await SeqStore.open(dir.path, { gapWindow: 1000, redeliveryWindow: 8, fleetWindow: 16 });
  quarantine = await Quarantine.open(join(dir.path, 'q'), { maxEntries: 100, retryMinMs: 20, retryMaxMs: 50, logger });
  spool = await Spool.open<StorePoint>(join(dir.path, 'spool'), { maxBytes: spoolMaxBytes });
  metrics = createIngestMetrics();
  pipeline = new IngestPipeline(
    { registry: () => registry, seqs, quarantine, spool, store, publishVerified: () => {}, metrics, logger },
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

/**
 * For what must not happen while the test holds something: resolves true as soon as `happened`, or
 * false after `graceMs`, the time a pipeline that skips the wait would need to do it (a seq-log fsync
 * or two). A correct pipeline waits however long it is held, so this can only ever miss a fault.
 */
async function happensWithin(happened: () => boolean, graceMs: number): Promise<boolean> {
  const deadline = Date.now() + graceMs;
  while (!happened()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return true;
}

/** The seq log on disk, read synchronously: what a crash at this very moment would leave. */
function seqLogOnDisk(): string {
  try {
    return readFileSync(join(dir.path, 'seq.log'), 'utf8');
  } catch {
    return '';
  }
}

beforeEach(() => setup());
afterEach(async () => {
  for (const open of gates.splice(0)) open();
  await pipeline.close();
  await seqs.close();
  await quarantine.close();
  await spool.close();
  await dir.remove();
});

describe('IngestPipeline', () => {
  it('acknowledges a message only after its readings are stored: not while the store write is in flight; at the ack the point is stored and the seq line on disk', async () => {
    const write = gate();
    store.held = write.opened;
    let atAck: { stored: number | undefined; seqLog: string } | undefined;
    const m = message(1, { t: 1 }, () => (atAck = { stored: store.stored.get(`dev-1|t|${T0 + 1}`)?.value, seqLog: seqLogOnDisk() }));
    pipeline.handle(m.incoming);
    expect(m.state.acked).toBe(false);
    await until(() => store.inFlight === 1, 'the batch write to reach the store');
    expect(await happensWithin(() => m.state.acked, 300)).toBe(false);
    expect(seqLogOnDisk()).toBe(''); // nothing is logged as accepted for good before the readings are
    write.open();
    await until(() => m.state.acked, 'ack once the write resolved');
    expect(atAck?.stored).toBe(1);
    expect(atAck?.seqLog).toContain('"d":"dev-1","s":[1]');
  });

  it('does not acknowledge before the seq-log append is fsynced, even with the readings stored', async () => {
    // The append held at its seam: the store port has answered, the seq log has not been written yet.
    const append = gate();
    let appendsCalled = 0;
    const appendNow = seqs.append.bind(seqs);
    seqs.append = async (batch) => {
      appendsCalled++;
      await append.opened;
      return appendNow(batch);
    };
    let seqLogAtAck: string | undefined;
    const m = message(1, { t: 1 }, () => (seqLogAtAck = seqLogOnDisk()));
    pipeline.handle(m.incoming);
    await until(() => store.stored.size === 1 || m.state.acked, 'the readings stored');
    expect(m.state.acked).toBe(false);
    await until(() => appendsCalled === 1 || m.state.acked, 'the seq-log append to start');
    expect(await happensWithin(() => m.state.acked, 300)).toBe(false);
    append.open();
    await until(() => m.state.acked, 'ack once the line is written');
    expect(seqLogAtAck).toContain('"d":"dev-1","s":[1]');
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
    await until(() => logged('quarantine write failed; retrying, its messages stay unacknowledged') >= 3, 'several failed quarantine writes');
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
    await until(() => logged('batch could not be persisted; retrying, its messages stay unacknowledged') >= 3, 'several failed seq-log writes');
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
