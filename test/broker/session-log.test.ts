/**
 * The session log on its own (broker/session-log.ts): what is appended and fsynced is what a replay
 * gives back; a record cut short by a crash is dropped, and nothing after a damaged one is trusted; a new
 * generation replaces the old once its snapshot is whole, and a replay falls back to the older one while
 * it is not; replaying a record twice changes nothing. A broker killed for real: crash.test.ts.
 */
import { readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SavedSessions } from '../../broker/session-file.ts';
import { records, replaySessionLog, SessionLog, SessionLogUnreadable } from '../../broker/session-log.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { rewriteFormat } from './helpers.ts';

let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir('sensorpipe-session-log-');
});
afterEach(async () => {
  await dir.remove();
});

const INGEST = { kind: 'service', service: 'ingest' } as const;
const empty = (): SavedSessions => ({ retained: [], sessions: [] });
const message = (n: number) => ({ topic: 'sensors/dev-a/telemetry', payload: Buffer.from(`reading ${n}`), qos: 1, retain: false, brokerId: 'b1', brokerCounter: n });
const files = async () => (await readdir(dir.path)).filter((f) => f.endsWith('.log')).sort();
const queuedPayloads = (saved: SavedSessions | undefined) => saved?.sessions.find((s) => s.clientId === 'ingest-1')?.outgoing.map((p) => p.payload.toString());

/** A log holding ingest's session with messages 0..count-1 queued, each fsynced. */
async function logWith(count: number, options: { compactMinBytes?: number; snapshot?: () => SavedSessions } = {}): Promise<SessionLog> {
  const log = await SessionLog.start(dir.path, 0, options.snapshot ?? empty, options);
  await log.append(records.subscribe('ingest-1', [{ topic: 'sensors/+/telemetry', qos: 1 }], INGEST), true);
  for (let n = 0; n < count; n++) await log.append(records.enqueue(['ingest-1'], message(n)), true);
  return log;
}

describe('the session log', () => {
  it('replays nothing when there is no log yet', async () => {
    const replayed = await replaySessionLog(dir.path);
    expect(replayed.saved).toBeUndefined();
    expect(replayed.generation).toBe(0);
  });

  it('gives back what was appended: sessions with their owners, queues in order, clears, retained messages', async () => {
    const log = await logWith(5);
    log.append(records.clear('ingest-1', message(1)), false);
    await log.append(records.retain({ topic: 'sensors/dev-a/status', payload: Buffer.from('online'), qos: 1, retain: true }), true);
    await log.append(records.subscribe('dev-a', [{ topic: 'sensors/dev-a/cmd', qos: 1 }], { kind: 'device', deviceId: 'dev-a' }), true);
    await log.append(records.unsubscribe('dev-a', ['sensors/dev-a/cmd']), true);
    await log.close();
    const { saved } = await replaySessionLog(dir.path);
    expect(queuedPayloads(saved)).toEqual(['reading 0', 'reading 2', 'reading 3', 'reading 4']);
    expect(saved?.sessions.find((s) => s.clientId === 'ingest-1')).toMatchObject({ owner: INGEST, subscriptions: [{ topic: 'sensors/+/telemetry', qos: 1 }] });
    expect(saved?.sessions.find((s) => s.clientId === 'dev-a')).toBeUndefined();
    expect(saved?.retained.map((r) => [r.topic, r.payload.toString()])).toEqual([['sensors/dev-a/status', 'online']]);
  });

  it('restores the same state from a record written twice (a snapshot and the operation after it)', async () => {
    const log = await logWith(3);
    await log.append(records.enqueue(['ingest-1'], message(1)), true);
    await log.close();
    expect(queuedPayloads((await replaySessionLog(dir.path)).saved)).toEqual(['reading 0', 'reading 1', 'reading 2']);
  });

  it('drops a record cut short at the end (a crash mid-write), and keeps what came before', async () => {
    const log = await logWith(4);
    await log.close();
    const [file] = await files();
    const path = join(dir.path, file!);
    await truncate(path, (await stat(path)).size - 3);
    const replayed = await replaySessionLog(dir.path);
    expect(queuedPayloads(replayed.saved)).toEqual(['reading 0', 'reading 1', 'reading 2']);
    expect(replayed.tornBytes).toBeGreaterThan(0);
  });

  it('trusts nothing after a damaged record', async () => {
    const log = await logWith(4);
    await log.close();
    const [file] = await files();
    const path = join(dir.path, file!);
    const data = await readFile(path);
    // Flip a byte inside the last-but-one record's payload ("reading 2"): its CRC no longer matches.
    const at = data.lastIndexOf(Buffer.from('reading 2'));
    data[at] = data[at]! ^ 0xff;
    await writeFile(path, data);
    expect(queuedPayloads((await replaySessionLog(dir.path)).saved)).toEqual(['reading 0', 'reading 1']);
  });

  it('starts a new generation from memory once the operations outgrow the snapshot, and deletes the old one', async () => {
    // The state in memory the log stands for, kept by hand here (broker/persistence.ts gives the real one).
    const queue = new Map<number, ReturnType<typeof message>>();
    const snapshot = (): SavedSessions => ({ retained: [], sessions: [{ clientId: 'ingest-1', owner: INGEST, subscriptions: [{ topic: 'sensors/+/telemetry', qos: 1 }], outgoing: [...queue.values()] }] });
    const log = await SessionLog.start(dir.path, 0, snapshot, { compactMinBytes: 4_096 });
    for (let n = 0; n < 400; n++) {
      queue.set(n, message(n));
      await log.append(records.enqueue(['ingest-1'], message(n)), true);
      if (n >= 5) {
        queue.delete(n - 5);
        log.append(records.clear('ingest-1', message(n - 5)), false);
      }
    }
    await log.close();
    expect(log.stats.generations).toBeGreaterThan(2);
    const remaining = await files();
    expect(remaining).toHaveLength(1);
    expect((await stat(join(dir.path, remaining[0]!))).size).toBeLessThan(4 * 4_096);
    expect(queuedPayloads((await replaySessionLog(dir.path)).saved)).toEqual([395, 396, 397, 398, 399].map((n) => `reading ${n}`));
  });

  it("replays the older generation while the newer one's snapshot is incomplete (a crash while writing it)", async () => {
    const log = await logWith(3);
    await log.close();
    const [older] = await files();
    const whole = await readFile(join(dir.path, older!));
    // A newer generation whose snapshot stops before its END record.
    await writeFile(join(dir.path, '999999999999.log'), whole.subarray(0, 40));
    const replayed = await replaySessionLog(dir.path);
    expect(replayed.generation).toBe(Number(older!.slice(0, 12)));
    expect(queuedPayloads(replayed.saved)).toEqual(['reading 0', 'reading 1', 'reading 2']);
  });

  it('refuses a log of another format, rather than replaying it as if it were empty', async () => {
    const log = await logWith(2);
    await log.close();
    await rewriteFormat(dir.path, 7);
    await expect(replaySessionLog(dir.path)).rejects.toThrow(SessionLogUnreadable);
    await expect(replaySessionLog(dir.path)).rejects.toThrow(/format 7, this broker reads format 1/);
  });

  it('refuses appends once closed', async () => {
    const log = await logWith(0);
    await log.close();
    await expect(log.append(records.clean('ingest-1'), true)).rejects.toThrow(/closed/);
  });
});
