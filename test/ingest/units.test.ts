/** ingest's building blocks: seq memory (replay/dedup/completeness), its persistence, spool, quarantine, verification. */
import { appendFile, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.ts';
import { Registry, type DeviceCredentials } from '../../core/registry.ts';
import { signTelemetry } from '../../core/signature.ts';
import { topics } from '../../core/topics.ts';
import { Quarantine, quarantineEntry, readQuarantine } from '../../ingest/quarantine.ts';
import { logLine, SeqStore, type SeqBatch } from '../../ingest/seq-store.ts';
import { SeqTracker, signatureDigest } from '../../ingest/seq-tracker.ts';
import { Spool } from '../../ingest/spool.ts';
import { verifyTelemetryMessage } from '../../ingest/verify.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const options = { gapWindow: 100, redeliveryWindow: 4, fleetWindow: 8 };
/** Digests of made-up messages: A is a message's content, B another content with the same seqs. */
const A = 1001;
const B = 2002;

type Message = [device: string, fresh: number[], digest: number];
/** Accepts messages of one seq range each into a new batch of the store's, and returns the batch. */
function accepted(store: SeqStore, ...messages: Message[]): SeqBatch {
  const batch = store.openBatch();
  for (const [device, fresh, digest] of messages) store.accept(batch, device, fresh, [fresh[0]!, fresh[fresh.length - 1]!], digest);
  return batch;
}
let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await dir.remove();
});

describe('SeqTracker', () => {
  it('accepts new seqs, skips seen ones, and tells a redelivery from a replay by content', () => {
    const t = new SeqTracker(options);
    expect(t.classify('d', [1, 2, 3], A)).toEqual({ kind: 'new', fresh: [1, 2, 3] });
    t.accept('d', [1, 2, 3], [1, 3], A);
    expect(t.classify('d', [1, 2, 3], A)).toEqual({ kind: 'duplicate' });
    expect(t.classify('d', [1, 2, 3], B)).toEqual({ kind: 'replay' }); // same seqs, other content
    expect(t.classify('d', [3, 4], B)).toEqual({ kind: 'new', fresh: [4] });
    expect(t.classify('d', [2], A)).toEqual({ kind: 'outside-window' }); // seen, but never sent alone: the store decides
    expect(t.classify('other', [1], A)).toEqual({ kind: 'new', fresh: [1] });
  });

  it('remembers a device\'s own last messages, and its messages among the fleet\'s last ones, and no more', () => {
    const t = new SeqTracker(options); // 4 per device, 8 fleet-wide
    for (let seq = 1; seq <= 8; seq++) t.accept('busy', [seq], [seq, seq], A + seq);
    // All 8 are the fleet's last 8: remembered, though the device's own window is 4.
    for (let seq = 1; seq <= 8; seq++) expect(t.classify('busy', [seq], A + seq), `seq ${seq}`).toEqual({ kind: 'duplicate' });
    for (let seq = 1; seq <= 6; seq++) t.accept('other', [seq], [seq, seq], A);
    // The fleet moved on by 6: busy keeps seqs 7 and 8 (fleet window) and at least its own last 4 (5..8).
    expect(t.classify('busy', [4], A + 4)).toEqual({ kind: 'outside-window' });
    for (let seq = 5; seq <= 8; seq++) expect(t.classify('busy', [seq], A + seq), `seq ${seq}`).toEqual({ kind: 'duplicate' });
    expect(t.classify('busy', [5], B)).toEqual({ kind: 'replay' });
    for (let seq = 7; seq <= 1000; seq++) t.accept('other', [seq], [seq, seq], A);
    for (let seq = 5; seq <= 8; seq++) expect(t.classify('busy', [seq], A + seq), `seq ${seq}`).toEqual({ kind: 'duplicate' });
    expect(t.classify('other', [992], A)).toEqual({ kind: 'outside-window' });
    expect(t.classify('other', [993], A)).toEqual({ kind: 'duplicate' });
    // Bounded: 4 for busy, 8 for other, whatever was accepted.
    const [busy, other] = [...t.devicesTracked()].map(([, state]) => t.remembered(state).length);
    expect([busy, other]).toEqual([4, 8]);
  });

  it('takes the signature\'s first 30 bits as the digest', () => {
    expect(signatureDigest('AAAAB')).toBe(1);
    expect(signatureDigest('/////')).toBe(2 ** 30 - 1);
    expect(signatureDigest('AAAAAzzzz')).toBe(0); // only the first 5 characters count
    expect(signatureDigest('BAAAA==')).toBe(2 ** 24);
  });

  it('counts gaps as missing and fills them when late readings arrive', () => {
    const t = new SeqTracker(options);
    t.accept('d', [10], [10, 10], A);
    t.accept('d', [14], [14, 14], A);
    expect(t.completeness('d')).toEqual({ received: 2, missing: 3, ratio: 0.4 });
    expect(t.classify('d', [12], A)).toEqual({ kind: 'new', fresh: [12] });
    t.accept('d', [12], [12, 12], A);
    expect(t.completeness('d')).toMatchObject({ received: 3, missing: 2 });
    expect(t.classify('d', [12], A)).toEqual({ kind: 'duplicate' });
  });

  it('treats seqs far below the window as seen, and counts a huge jump as missing without storing it', () => {
    const t = new SeqTracker(options);
    t.accept('d', [1], [1, 1], A);
    t.accept('d', [1000], [1000, 1000], A);
    expect(t.completeness('d')?.missing).toBe(998);
    expect(t.classify('d', [500], A)).toEqual({ kind: 'outside-window' });
    expect(t.classify('d', [950], A)).toEqual({ kind: 'new', fresh: [950] });
  });
});

describe('SeqStore', () => {
  it('survives a restart: replays stay refused and redeliveries stay duplicates', async () => {
    let store = await SeqStore.open(dir.path, options);
    const durable = accepted(store, ['d', [1, 2], A], ['d', [5], A]);
    accepted(store, ['d', [6], A]); // its readings never became durable: its line is never written
    await store.append(durable);
    await store.close();
    await appendFile(join(dir.path, 'seq.log'), '{"d":"d","s":[7'); // a torn line: a crash mid-write
    store = await SeqStore.open(dir.path, options);
    expect(store.tracker.classify('d', [5], A)).toEqual({ kind: 'duplicate' });
    expect(store.tracker.classify('d', [5], B)).toEqual({ kind: 'replay' });
    expect(store.tracker.classify('d', [1, 2], A)).toEqual({ kind: 'duplicate' });
    expect(store.tracker.classify('d', [3], A)).toEqual({ kind: 'new', fresh: [3] });
    expect(store.tracker.classify('d', [6], A)).toEqual({ kind: 'new', fresh: [6] });
    expect(store.tracker.completeness('d')).toMatchObject({ received: 3, missing: 2 });
    // A line written after the torn one is read whole.
    await store.append(accepted(store, ['d', [8], B]));
    await store.close();
    store = await SeqStore.open(dir.path, options);
    expect(store.tracker.classify('d', [8], B)).toEqual({ kind: 'duplicate' });
    await store.compact();
    await store.close();
    store = await SeqStore.open(dir.path, options);
    expect(store.tracker.classify('d', [1, 2], A)).toEqual({ kind: 'duplicate' });
    expect(store.tracker.classify('d', [8], B)).toEqual({ kind: 'duplicate' });
    expect(store.tracker.classify('d', [8], A)).toEqual({ kind: 'replay' });
    expect(store.tracker.completeness('d')).toMatchObject({ received: 4, missing: 4 });
    await store.close();
  });

  it('keeps the fleet window across a snapshot and a restart', async () => {
    let store = await SeqStore.open(dir.path, options);
    const messages: Message[] = [];
    for (let seq = 1; seq <= 8; seq++) messages.push(['busy', [seq], A + seq]);
    for (let seq = 1; seq <= 3; seq++) messages.push(['other', [seq], A]);
    await store.append(accepted(store, ...messages));
    await store.compact();
    await store.close();
    store = await SeqStore.open(dir.path, options);
    expect(store.tracker.classify('busy', [3], A + 3)).toEqual({ kind: 'outside-window' }); // neither its own last 4 nor the fleet's last 8
    for (let seq = 4; seq <= 8; seq++) expect(store.tracker.classify('busy', [seq], A + seq), `seq ${seq}`).toEqual({ kind: 'duplicate' });
    // The fleet window goes on from where it was: 3 more messages push busy's seq 4 out of it.
    await store.append(accepted(store, ['other', [4], A], ['other', [5], A], ['other', [6], A]));
    expect(store.tracker.classify('busy', [4], A + 4)).toEqual({ kind: 'outside-window' });
    expect(store.tracker.classify('busy', [5], A + 5)).toEqual({ kind: 'duplicate' });
    await store.close();
  });

  it('saves messages that are not durable yet as gaps in the snapshot, so their redelivery is accepted after a crash', async () => {
    let store = await SeqStore.open(dir.path, options);
    await store.append(accepted(store, ['d', [1], A]));
    // Accepted, their batch not written yet: one message of d, and the first message of e.
    accepted(store, ['d', [2], A], ['e', [1], A]);
    await store.compact(); // and then a crash: the batch never becomes durable
    store = await SeqStore.open(dir.path, options);
    expect(store.tracker.classify('d', [1], A)).toEqual({ kind: 'duplicate' });
    expect(store.tracker.classify('d', [2], A)).toEqual({ kind: 'new', fresh: [2] });
    expect(store.tracker.classify('e', [1], A)).toEqual({ kind: 'new', fresh: [1] });
    await store.close();
  });

  it('reads files written before digests were kept, and that version can read the new ones', async () => {
    await writeFile(join(dir.path, 'seq-snapshot.json'), JSON.stringify({ version: 1, devices: { d: { high: 10, gaps: [4], recent: [[9, 9], [10, 10]], received: 9, missing: 1 } } }));
    await writeFile(join(dir.path, 'seq.log'), '{"d":"d","s":[11],"r":[11,11]}\n');
    let store = await SeqStore.open(dir.path, options);
    // Messages of unknown content match any message with their seqs, as they did in that version.
    expect(store.tracker.classify('d', [10], B)).toEqual({ kind: 'duplicate' });
    expect(store.tracker.classify('d', [11], B)).toEqual({ kind: 'duplicate' });
    expect(store.tracker.classify('d', [4], A)).toEqual({ kind: 'new', fresh: [4] });
    expect(store.tracker.completeness('d')).toMatchObject({ received: 10, missing: 1 });
    await store.append(accepted(store, ['d', [12], A]));
    await store.compact();
    await store.close();
    const snapshot = JSON.parse(await readFile(join(dir.path, 'seq-snapshot.json'), 'utf8')) as { devices: Record<string, { high: number; gaps: number[]; recent: number[][] }> };
    // What that version's loader reads: high, gaps, and [first, last] at the start of each `recent` entry.
    expect(snapshot.devices.d).toMatchObject({ high: 12, gaps: [4] });
    expect(snapshot.devices.d!.recent.map(([first, last]) => [first, last])).toEqual([[9, 9], [10, 10], [11, 11], [12, 12]]);
    store = await SeqStore.open(dir.path, options);
    expect(store.tracker.classify('d', [12], A)).toEqual({ kind: 'duplicate' });
    expect(store.tracker.classify('d', [12], B)).toEqual({ kind: 'replay' });
    await store.close();
  });

  it('lets appends and compactions take turns', async () => {
    const store = await SeqStore.open(dir.path, options, { compactAfterBytes: 200 });
    const appends = [];
    for (let seq = 1; seq <= 40; seq++) appends.push(store.append(accepted(store, ['d', [seq], A + seq])));
    await Promise.all(appends); // compactions (every ~4 lines) while later appends wait their turn
    await store.close();
    const reopened = await SeqStore.open(dir.path, options);
    for (let seq = 37; seq <= 40; seq++) expect(reopened.tracker.classify('d', [seq], A + seq)).toEqual({ kind: 'duplicate' });
    expect(reopened.tracker.completeness('d')).toMatchObject({ received: 40, missing: 0 });
    await reopened.close();
  });
});

describe('seq log lines', () => {
  it.each([
    ['one seq', 'dev-1', [7], [7, 7], 0],
    ['a batch with a gap', 'press-12', [3, 4, 9], [3, 9], 123_456_789],
    ['seqs near 2^53', 'd', [2 ** 53 - 2, 2 ** 53 - 1], [2 ** 53 - 2, 2 ** 53 - 1], 2 ** 30 - 1],
  ] as const)('are the JSON of { d, s, r, h }, h the digest\'s base64 characters: %s', (_name, device, fresh, range, digest) => {
    const line = logLine(device, fresh, range, digest);
    const parsed = JSON.parse(line) as { h: string };
    expect(line).toBe(`${JSON.stringify({ d: device, s: fresh, r: range, h: parsed.h })}\n`);
    expect(parsed.h).toMatch(/^[A-Za-z0-9+/]{5}$/);
    expect(signatureDigest(parsed.h)).toBe(digest);
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

  it('starts a new segment after a failed append, so the retried record is not hidden behind a torn one', async () => {
    const path = join(dir.path, 'spool');
    const spool = await Spool.open<string>(path, { maxBytes: 1_000_000 });
    await spool.append(spool.encode(['a']));
    // The next write puts half the record in the file and fails (a full disk, say).
    const handle = (spool as unknown as { writer: { handle: { write(buffer: Buffer): Promise<unknown> } } }).writer.handle;
    const write = handle.write.bind(handle);
    handle.write = async (buffer: Buffer) => {
      handle.write = write; // once
      await write(buffer.subarray(0, buffer.length >> 1));
      throw new Error('ENOSPC');
    };
    const b = spool.encode(['b']);
    await expect(spool.append(b)).rejects.toThrow('ENOSPC');
    await spool.append(b); // the caller's retry
    await spool.append(spool.encode(['c']));
    await spool.close();
    const reopened = await Spool.open<string>(path, { maxBytes: 1_000_000 });
    const items: string[] = [];
    for (let record = await reopened.peek(); record; record = await reopened.peek()) {
      items.push(...record.items);
      await reopened.release(record);
    }
    expect(items).toEqual(['a', 'b', 'c']);
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

  const entry = (i: number) => quarantineEntry({ reason: 'PAYLOAD_INVALID', topic: topics.telemetry(`dev-${i}`), device: `dev-${i}`, message: 'bad', payload: Buffer.from(`payload-${i}`) }, 100);

  it('serialises flushes from several callers at once, across rotations', async () => {
    const q = await Quarantine.open(join(dir.path, 'q'), { maxEntries: 2 }); // one entry per file
    q.add(entry(0));
    await q.flush(); // the current file is full: the next flush rotates it
    for (let i = 1; i < 6; i++) q.add(entry(i));
    // Three callers at once, each finding the file full (two rotations of one file: ENOENT on the rename).
    await Promise.all([q.flush(), q.flush(), q.flush()]);
    expect((await readQuarantine(join(dir.path, 'q'))).entries.map((e) => e.device)).toEqual(['dev-4', 'dev-5']);
    // Callers between adds.
    await Promise.all(
      [6, 7, 8, 9].map(async (i) => {
        q.add(entry(i));
        await q.flush();
      }),
    );
    await q.close();
    const all = await readQuarantine(join(dir.path, 'q'));
    expect(all.entries.map((e) => e.device)).toEqual(['dev-8', 'dev-9']);
    expect(all.evicted).toBe(8);
  });

  it('retries a write into a folder that was removed, and writes the entries again where they can be read', async () => {
    const path = join(dir.path, 'q');
    const q = await Quarantine.open(path, { maxEntries: 10, retryMinMs: 5, retryMaxMs: 10 });
    q.add(entry(0));
    await q.flush();
    await rm(path, { recursive: true }); // while the file is open: a write into it would reach no one
    q.add(entry(1));
    await q.flush();
    expect((await readQuarantine(path)).entries.map((e) => e.device)).toEqual(['dev-1']);
    await q.close();
  });

  it('keeps retrying a write that fails, resolves once it succeeds, and never rejects meanwhile', async () => {
    const path = join(dir.path, 'q');
    let failures = 0;
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        failures += chunk.toString().split('"msg":"quarantine write failed').length - 1;
        callback();
      },
    });
    const q = await Quarantine.open(path, { maxEntries: 10, retryMinMs: 5, retryMaxMs: 10, logger: createLogger({ level: 'error', destination }) });
    await rm(path, { recursive: true });
    await writeFile(path, 'a file where the folder should be');
    q.add(entry(1));
    let outcome = 'pending';
    const flushed = q.flush().then(
      () => (outcome = 'resolved'),
      () => (outcome = 'rejected'),
    );
    const deadline = Date.now() + 10_000;
    while (failures < 5 && outcome === 'pending' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(failures).toBeGreaterThanOrEqual(5); // five failed attempts, and still waiting
    expect(outcome).toBe('pending');
    await rm(path);
    await flushed;
    expect(outcome).toBe('resolved');
    expect((await readQuarantine(path)).entries.map((e) => e.device)).toEqual(['dev-1']);
    await q.close();
  });

  it('gives up once ingest stops, and closes without throwing', async () => {
    const path = join(dir.path, 'q');
    const stopping = new AbortController();
    const q = await Quarantine.open(path, { maxEntries: 10, retryMinMs: 5, retryMaxMs: 10, signal: stopping.signal });
    await rm(path, { recursive: true });
    await writeFile(path, 'a file where the folder should be');
    q.add(entry(1));
    const flushed = q.flush();
    stopping.abort();
    await expect(flushed).rejects.toThrow();
    await q.close();
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

  it('rejects a replay (other content under accepted seqs) and passes a redelivery as a duplicate', () => {
    const ctx = context();
    for (let seq = 1; seq <= 6; seq++) {
      const verdict = verifyTelemetryMessage(topics.telemetry('dev-1'), payload(seq), ctx);
      if (verdict.kind !== 'accepted') throw new Error('expected accepted');
      ctx.seqs.accept('dev-1', verdict.fresh, verdict.range, verdict.digest);
    }
    expect(verifyTelemetryMessage(topics.telemetry('dev-1'), payload(6), ctx)).toEqual({ kind: 'duplicate', device: 'dev-1', readings: 1 });
    expect(verifyTelemetryMessage(topics.telemetry('dev-1'), payload(6, { ts: now - 1 }), ctx)).toMatchObject({ kind: 'rejected', reason: 'READING_REPLAYED' });
    // Six messages ago, with a device window of 4 and a fleet window of 8: still remembered.
    expect(verifyTelemetryMessage(topics.telemetry('dev-1'), payload(1), ctx)).toEqual({ kind: 'duplicate', device: 'dev-1', readings: 1 });
    expect(verifyTelemetryMessage(topics.telemetry('dev-1'), payload(1, { ts: now - 1 }), ctx)).toMatchObject({ kind: 'rejected', reason: 'READING_REPLAYED' });
    // Seen, but not a message it sent: only the store can tell (the pipeline asks it).
    const twoReadings = Buffer.from(JSON.stringify(signTelemetry({ v: 1, device: 'dev-1', readings: [{ seq: 1, ts: now, values: { t: 1 } }, { seq: 2, ts: now, values: { t: 2 } }] }, key)));
    expect(verifyTelemetryMessage(topics.telemetry('dev-1'), twoReadings, ctx)).toMatchObject({ kind: 'outside-window', device: 'dev-1', range: [1, 2] });
  });
});
