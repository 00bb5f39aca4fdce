/** ingest's building blocks: seq memory (replay/dedup/completeness), its persistence, spool, quarantine, verification. */
import { appendFile, readdir, readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Registry, type DeviceCredentials } from '../../core/registry.ts';
import { signTelemetry } from '../../core/signature.ts';
import { topics } from '../../core/topics.ts';
import { Quarantine, quarantineEntry, readQuarantine } from '../../ingest/quarantine.ts';
import { logLine, SeqStore } from '../../ingest/seq-store.ts';
import { SeqTracker } from '../../ingest/seq-tracker.ts';
import { Spool } from '../../ingest/spool.ts';
import { verifyTelemetryMessage } from '../../ingest/verify.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const options = { gapWindow: 100, redeliveryWindow: 4 };
let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await dir.remove();
});

describe('SeqTracker', () => {
  it('accepts new seqs, skips seen ones, and tells a redelivery from a replay', () => {
    const t = new SeqTracker(options);
    expect(t.classify('d', [1, 2, 3])).toEqual({ kind: 'new', fresh: [1, 2, 3] });
    t.accept('d', [1, 2, 3], [1, 3]);
    expect(t.classify('d', [1, 2, 3])).toEqual({ kind: 'duplicate' });
    expect(t.classify('d', [3, 4])).toEqual({ kind: 'new', fresh: [4] });
    expect(t.classify('d', [2])).toEqual({ kind: 'replay' }); // seen, but never sent alone: not a redelivery
    for (let seq = 4; seq < 10; seq++) t.accept('d', [seq], [seq, seq]);
    expect(t.classify('d', [1, 2, 3])).toEqual({ kind: 'replay' }); // out of the last 4 messages now
    expect(t.classify('d', [9])).toEqual({ kind: 'duplicate' });
    expect(t.classify('other', [1])).toEqual({ kind: 'new', fresh: [1] });
  });

  it('counts gaps as missing and fills them when late readings arrive', () => {
    const t = new SeqTracker(options);
    t.accept('d', [10], [10, 10]);
    t.accept('d', [14], [14, 14]);
    expect(t.completeness('d')).toEqual({ received: 2, missing: 3, ratio: 0.4 });
    expect(t.classify('d', [12])).toEqual({ kind: 'new', fresh: [12] });
    t.accept('d', [12], [12, 12]);
    expect(t.completeness('d')).toMatchObject({ received: 3, missing: 2 });
    expect(t.classify('d', [12])).toEqual({ kind: 'duplicate' });
  });

  it('treats seqs far below the window as seen, and counts a huge jump as missing without storing it', () => {
    const t = new SeqTracker(options);
    t.accept('d', [1], [1, 1]);
    t.accept('d', [1000], [1000, 1000]);
    expect(t.completeness('d')?.missing).toBe(998);
    expect(t.classify('d', [500])).toMatchObject({ kind: 'replay' });
    expect(t.classify('d', [950])).toEqual({ kind: 'new', fresh: [950] });
  });
});

describe('SeqStore', () => {
  it('survives a restart: replays stay refused and redeliveries stay duplicates', async () => {
    let store = await SeqStore.open(dir.path, options);
    const lines = [store.accept('d', [1, 2], [1, 2]), store.accept('d', [5], [5, 5])];
    store.accept('d', [6], [6, 6]); // its readings never became durable: its line is never written
    await store.append(lines);
    await store.close();
    await appendFile(join(dir.path, 'seq.log'), '{"d":"d","s":[7'); // a torn line: a crash mid-write
    store = await SeqStore.open(dir.path, options);
    expect(store.tracker.classify('d', [5])).toEqual({ kind: 'duplicate' });
    expect(store.tracker.classify('d', [1, 2])).toEqual({ kind: 'duplicate' });
    expect(store.tracker.classify('d', [3])).toEqual({ kind: 'new', fresh: [3] });
    expect(store.tracker.completeness('d')).toMatchObject({ received: 3, missing: 2 });
    await store.compact();
    await store.close();
    store = await SeqStore.open(dir.path, options);
    expect(store.tracker.classify('d', [1, 2])).toEqual({ kind: 'duplicate' });
    expect(store.tracker.completeness('d')).toMatchObject({ received: 3, missing: 2 });
    await store.close();
  });
});

describe('seq log lines', () => {
  it.each([
    ['one seq', 'dev-1', [7], [7, 7]],
    ['a batch with a gap', 'press-12', [3, 4, 9], [3, 9]],
    ['seqs near 2^53', 'd', [2 ** 53 - 2, 2 ** 53 - 1], [2 ** 53 - 2, 2 ** 53 - 1]],
  ] as const)('are the JSON of { d, s, r }: %s', (_name, device, fresh, range) => {
    const line = logLine(device, fresh, range);
    expect(line).toBe(`${JSON.stringify({ d: device, s: fresh, r: range })}\n`);
    expect(JSON.parse(line)).toEqual({ d: device, s: fresh, r: range });
  });
});

describe('Spool', () => {
  it('replays records in order across segments and a restart, then deletes them', async () => {
    const path = join(dir.path, 'spool');
    let spool = await Spool.open<number>(path, { maxBytes: 1_000_000, segmentBytes: 64 });
    for (let i = 0; i < 10; i++) await spool.append(spool.encode([i, i + 0.5], 1000 + i));
    expect((await readdir(path)).length).toBeGreaterThan(1);
    const first = await spool.peek();
    expect(first?.items).toEqual([0, 0.5]);
    await spool.release(first!);
    await spool.close();

    spool = await Spool.open<number>(path, { maxBytes: 1_000_000, segmentBytes: 64 });
    const seen: number[] = [];
    for (let record = await spool.peek(); record; record = await spool.peek()) {
      seen.push(record.items[0]!);
      await spool.release(record);
    }
    // The first record's segment was not finished before the restart, so it comes again: at-least-once.
    expect(seen.slice(-9)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(spool.isEmpty).toBe(true);
    expect(spool.bytes).toBe(0);
    expect(await readdir(path)).toEqual([]);
  });

  it('drops a torn record at the end and keeps the ones before it', async () => {
    const path = join(dir.path, 'spool');
    const spool = await Spool.open<string>(path, { maxBytes: 1_000_000 });
    await spool.append(spool.encode(['a']));
    await spool.append(spool.encode(['b']));
    await spool.close();
    const [segment] = await readdir(path);
    const size = (await readFile(join(path, segment!))).length;
    await truncate(join(path, segment!), size - 3);
    const reopened = await Spool.open<string>(path, { maxBytes: 1_000_000 });
    expect((await reopened.peek())?.items).toEqual(['a']);
    await reopened.release((await reopened.peek())!);
    expect(await reopened.peek()).toBeUndefined();
  });

  it('knows when it is full', async () => {
    const spool = await Spool.open<number>(join(dir.path, 'spool'), { maxBytes: 200 });
    const record = spool.encode(Array.from({ length: 20 }, (_, i) => i));
    expect(spool.hasRoomFor(record.length)).toBe(true);
    await spool.append(record);
    await spool.append(record);
    expect(spool.hasRoomFor(record.length)).toBe(false);
  });
});

describe('Quarantine', () => {
  it('keeps entries with reason, device and a truncated payload, bounded with evictions counted', async () => {
    const q = await Quarantine.open(join(dir.path, 'q'), { maxEntries: 4 });
    for (let i = 0; i < 7; i++) {
      q.add(quarantineEntry({ reason: i % 2 ? 'READING_BAD_SIGNATURE' : 'PAYLOAD_INVALID', topic: topics.telemetry(`dev-${i}`), device: `dev-${i}`, message: 'bad', payload: Buffer.from(`payload-${i}-${'x'.repeat(100)}`) }, 16));
      await q.flush();
    }
    await q.close();
    const all = await readQuarantine(join(dir.path, 'q'));
    expect(all.entries.map((e) => e.device)).toEqual(['dev-4', 'dev-5', 'dev-6']);
    expect(all.evicted).toBe(4);
    expect(all.entries[0]).toMatchObject({ reason: 'PAYLOAD_INVALID', payload: 'payload-4-xxxxxx', truncated: true, payloadBytes: 110, encoding: 'utf8' });
    expect((await readQuarantine(join(dir.path, 'q'), { reason: 'READING_BAD_SIGNATURE' })).entries.map((e) => e.device)).toEqual(['dev-5']);
    expect((await readQuarantine(join(dir.path, 'q'), { device: 'dev-6' })).entries).toHaveLength(1);
  });

  it('stores non-UTF-8 payloads as base64', () => {
    const entry = quarantineEntry({ reason: 'PAYLOAD_INVALID', topic: 't', message: 'm', payload: Buffer.from([0xff, 0xfe, 0x00]) }, 100);
    expect(entry).toMatchObject({ encoding: 'base64', payload: '//4A', truncated: false });
  });
});

describe('verifyTelemetryMessage', () => {
  const now = Date.UTC(2026, 5, 1);
  const bounds = { maxFutureMs: 300_000, maxAgeMs: 86_400_000 };
  const registry = new Registry();
  const good = registry.add('dev-1', { meta: { site: 'lab' } }) as DeviceCredentials & { signing: { alg: 'hmac-sha256'; key: string } };
  registry.add('dev-2');
  registry.revoke('dev-2');
  const key = { alg: 'hmac-sha256' as const, key: Buffer.from(good.signing.key, 'base64') };
  const payload = (seq: number, options: { device?: string; ts?: number; key?: Buffer } = {}) =>
    Buffer.from(JSON.stringify(signTelemetry({ v: 1, device: options.device ?? 'dev-1', readings: [{ seq, ts: options.ts ?? now, values: { t: seq } }] }, { alg: 'hmac-sha256', key: options.key ?? key.key })));
  const context = () => ({ registry, seqs: new SeqTracker(options), now, bounds });

  it('accepts a good message with the device metadata', () => {
    expect(verifyTelemetryMessage(topics.telemetry('dev-1'), payload(1), context())).toMatchObject({ kind: 'accepted', device: 'dev-1', meta: { site: 'lab' }, fresh: [1], range: [1, 1] });
  });

  it.each([
    ['a topic of another device', topics.telemetry('dev-9'), payload(1), 'TOPIC_DEVICE_MISMATCH'],
    ['a status topic', topics.status('dev-1'), payload(1), 'TOPIC_INVALID'],
    ['an unknown device', topics.telemetry('dev-3'), payload(1, { device: 'dev-3' }), 'DEVICE_UNKNOWN'],
    ['a revoked device', topics.telemetry('dev-2'), payload(1, { device: 'dev-2' }), 'DEVICE_REVOKED'],
    ['a forged signature', topics.telemetry('dev-1'), payload(1, { key: Buffer.alloc(32, 1) }), 'READING_BAD_SIGNATURE'],
    ['a clock far ahead', topics.telemetry('dev-1'), payload(1, { ts: now + 3_600_000 }), 'READING_TS_OUT_OF_RANGE'],
    ['a clock far behind', topics.telemetry('dev-1'), payload(1, { ts: now - 2 * 86_400_000 }), 'READING_TS_OUT_OF_RANGE'],
    ['not JSON', topics.telemetry('dev-1'), Buffer.from('hello'), 'PAYLOAD_INVALID'],
  ])('rejects %s', (_name, topic, bytes, reason) => {
    expect(verifyTelemetryMessage(topic, bytes, context())).toMatchObject({ kind: 'rejected', reason });
  });

  it('uses a rotated key at once, though the old one was used (and cached) before', () => {
    const rotating = new Registry();
    const first = rotating.add('dev-r') as DeviceCredentials & { signing: { key: string } };
    const sign = (seq: number, keyBase64: string) =>
      Buffer.from(JSON.stringify(signTelemetry({ v: 1, device: 'dev-r', readings: [{ seq, ts: now, values: { t: seq } }] }, { alg: 'hmac-sha256', key: Buffer.from(keyBase64, 'base64') })));
    const ctx = { registry: rotating, seqs: new SeqTracker(options), now, bounds };
    expect(verifyTelemetryMessage(topics.telemetry('dev-r'), sign(1, first.signing.key), ctx)).toMatchObject({ kind: 'accepted' });
    const second = rotating.rotate('dev-r') as DeviceCredentials & { signing: { key: string } };
    expect(verifyTelemetryMessage(topics.telemetry('dev-r'), sign(2, first.signing.key), ctx)).toMatchObject({ kind: 'rejected', reason: 'READING_BAD_SIGNATURE' });
    expect(verifyTelemetryMessage(topics.telemetry('dev-r'), sign(3, second.signing.key), ctx)).toMatchObject({ kind: 'accepted' });
    // Even a key changed inside the same record object is noticed.
    const record = rotating.get('dev-r')!;
    const third = Buffer.alloc(32, 7).toString('base64');
    (record.signing as { key: string }).key = third;
    expect(verifyTelemetryMessage(topics.telemetry('dev-r'), sign(4, second.signing.key), ctx)).toMatchObject({ kind: 'rejected', reason: 'READING_BAD_SIGNATURE' });
    expect(verifyTelemetryMessage(topics.telemetry('dev-r'), sign(5, third), ctx)).toMatchObject({ kind: 'accepted' });
  });

  it('verifies Ed25519 devices, and refuses another key with the same device id after a rotation', () => {
    const edRegistry = new Registry();
    const first = edRegistry.add('dev-ed', { alg: 'ed25519' }) as DeviceCredentials & { signing: { privateKey: string } };
    const sign = (seq: number, privateKey: string) =>
      Buffer.from(JSON.stringify(signTelemetry({ v: 1, device: 'dev-ed', readings: [{ seq, ts: now, values: { t: seq } }] }, { alg: 'ed25519', privateKey: Buffer.from(privateKey, 'base64') })));
    const ctx = { registry: edRegistry, seqs: new SeqTracker(options), now, bounds };
    expect(verifyTelemetryMessage(topics.telemetry('dev-ed'), sign(1, first.signing.privateKey), ctx)).toMatchObject({ kind: 'accepted' });
    expect(verifyTelemetryMessage(topics.telemetry('dev-ed'), sign(2, first.signing.privateKey), ctx)).toMatchObject({ kind: 'accepted' });
    const second = edRegistry.rotate('dev-ed') as DeviceCredentials & { signing: { privateKey: string } };
    expect(verifyTelemetryMessage(topics.telemetry('dev-ed'), sign(3, first.signing.privateKey), ctx)).toMatchObject({ kind: 'rejected', reason: 'READING_BAD_SIGNATURE' });
    expect(verifyTelemetryMessage(topics.telemetry('dev-ed'), sign(4, second.signing.privateKey), ctx)).toMatchObject({ kind: 'accepted' });
  });

  it('rejects a replay and passes a redelivery as a duplicate', () => {
    const ctx = context();
    for (let seq = 1; seq <= 6; seq++) {
      const verdict = verifyTelemetryMessage(topics.telemetry('dev-1'), payload(seq), ctx);
      if (verdict.kind !== 'accepted') throw new Error('expected accepted');
      ctx.seqs.accept('dev-1', verdict.fresh, verdict.range);
    }
    expect(verifyTelemetryMessage(topics.telemetry('dev-1'), payload(6), ctx)).toEqual({ kind: 'duplicate', device: 'dev-1' });
    expect(verifyTelemetryMessage(topics.telemetry('dev-1'), payload(1), ctx)).toMatchObject({ kind: 'rejected', reason: 'READING_REPLAYED' });
  });
});
