/**
 * The broker's persistence choice (broker/persistence.ts) without Redis: the session file is restored at
 * start and consumed, a bad one is moved aside and the broker starts without it, and what is held is
 * saved at stop (a failed save is logged, not thrown), each session with its owner, and what an owner may
 * not have is left out as the file is read back. Redis is tested in scale-out.test.ts and
 * session-acl.test.ts.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { IndexedMemoryPersistenceAsync, SessionsExport } from '../../broker/indexed-persistence.ts';
import { mayHoldFilter, type Subscriber } from '../../broker/acl.ts';
import { openPersistence, type BrokerPersistence } from '../../broker/persistence.ts';
import { SessionGuard } from '../../broker/session-guard.ts';
import { logDirOf } from '../../broker/session-log.ts';
import { saveSessions, sessionFilePath, takeSessions, type SavedSessions } from '../../broker/session-file.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { captureLogger, rewriteFormat } from './helpers.ts';

const saved: SessionsExport = {
  retained: [{ topic: 'sensors/a/status', payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true }],
  sessions: [
    {
      clientId: 'ingest',
      subscriptions: [{ topic: 'sensors/+/telemetry', qos: 1 }],
      outgoing: [
        { topic: 'sensors/a/telemetry', payload: Buffer.from('one'), qos: 1, retain: false, brokerId: 'b1', brokerCounter: 1 },
        { topic: 'sensors/a/telemetry', payload: Buffer.from('two'), qos: 1, retain: false, brokerId: 'b1', brokerCounter: 2 },
      ],
    },
  ],
};

const LIMITS = { maxTopicLevels: 16, maxTopicBytes: 256 };
/** A guard as the broker makes it; `principals` says who each client object (by id) logged in as. */
function guard(principals: Record<string, Subscriber> = {}): SessionGuard {
  return new SessionGuard({
    principalOf: (client) => principals[client.id],
    mayHold: (principal, filter) => mayHoldFilter(principal, filter, LIMITS),
    onRestoreRefused: () => {},
    onRemoveFailed: () => {},
  });
}
/** Registered devices, for sessions saved without an owner. */
const DEVICES = new Set(['dev-a', 'dev-b']);
const options = (sessions = guard()) => ({ sessions, deviceOwner: (id: string): Subscriber | undefined => (DEVICES.has(id) ? { kind: 'device', deviceId: id } : undefined) });

const memoryOf = (p: BrokerPersistence) => p.aedesOptions.persistence as IndexedMemoryPersistenceAsync;
const comparable = (e: SessionsExport) => ({
  retained: e.retained.map((r) => ({ topic: r.topic, payload: r.payload.toString() })),
  sessions: e.sessions.map((s) => ({ clientId: s.clientId, topics: s.subscriptions.map((x) => x.topic), outgoing: s.outgoing.map((o) => o.payload.toString()) })),
});

let dir: TempDir;
let file: string;
beforeEach(async () => {
  dir = await tempDir('sensorpipe-broker-persistence-');
  file = sessionFilePath(dir.path);
});
afterEach(async () => {
  await dir.remove();
});

describe('openPersistence in memory', () => {
  it('starts empty when there is no session file', async () => {
    const logs = captureLogger();
    const persistence = await openPersistence({ dataDir: dir.path, brokerWal: false }, logs.logger, options());
    expect(persistence.kind).toBe('memory');
    expect(persistence.aedesOptions.mq).toBeUndefined();
    expect(memoryOf(persistence).exportSessions()).toEqual({ retained: [], sessions: [] });
    expect(logs.lines.filter((l) => (l.level as number) >= 40)).toEqual([]);
  });

  it('restores the session file and removes it', async () => {
    await saveSessions(file, saved);
    const logs = captureLogger();
    const persistence = await openPersistence({ dataDir: dir.path, brokerWal: false }, logs.logger, options());
    expect(comparable(memoryOf(persistence).exportSessions())).toEqual(comparable(saved));
    expect(existsSync(file)).toBe(false);
    expect(logs.lines).toContainEqual(expect.objectContaining({ msg: 'sessions restored from the last stop', sessions: 1, queued: 2, retained: 1, file }));
  });

  const bad: [string, string][] = [
    ['not JSON', 'not json {'],
    ['another version', JSON.stringify({ version: 99, savedAt: 0, retained: [], sessions: [] })],
  ];
  for (const [name, text] of bad) {
    it(`moves a session file that is ${name} aside and starts without it`, async () => {
      await mkdir(join(dir.path, 'broker'), { recursive: true });
      await writeFile(file, text);
      const logs = captureLogger();
      const persistence = await openPersistence({ dataDir: dir.path, brokerWal: false }, logs.logger, options());
      expect(memoryOf(persistence).exportSessions()).toEqual({ retained: [], sessions: [] });
      expect(existsSync(file)).toBe(false);
      expect(await readFile(`${file}.unreadable`, 'utf8')).toBe(text);
      expect(logs.lines).toContainEqual(expect.objectContaining({ level: 50, msg: 'saved sessions could not be read; starting without them', file }));
    });
  }

  it('saves what it holds for the next start', async () => {
    await saveSessions(file, saved);
    const persistence = await openPersistence({ dataDir: dir.path, brokerWal: false }, captureLogger().logger, options());
    expect(existsSync(file)).toBe(false);
    await persistence.saveSessions();
    await persistence.close();
    const again = await takeSessions(file);
    expect(again && comparable(again)).toEqual(comparable(saved));
  });

  it('moves a session log it cannot read aside, says so, and starts without it', async () => {
    const first = await openPersistence({ dataDir: dir.path, brokerWal: true }, captureLogger().logger, options());
    await memoryOf(first).importSessions(saved);
    await first.saveSessions();
    const logDir = logDirOf(dir.path);
    await rewriteFormat(logDir, 9);
    const logs = captureLogger();
    const second = await openPersistence({ dataDir: dir.path, brokerWal: true }, logs.logger, options());
    expect(memoryOf(second).exportSessions()).toEqual({ retained: [], sessions: [] });
    const error = logs.lines.find((l) => l.msg === 'session log unreadable; moved aside, starting without it');
    expect(error).toMatchObject({ level: 50, err: expect.stringMatching(/format 9/) });
    expect(existsSync(error!.movedTo as string)).toBe(true);
    await second.saveSessions();
  });

  it('logs a save that fails, and does not throw', async () => {
    // The data folder is a file: nothing can be written under it.
    const blocked = join(dir.path, 'not-a-folder');
    await writeFile(blocked, '');
    const logs = captureLogger();
    const persistence = await openPersistence({ dataDir: blocked, brokerWal: false }, logs.logger, options());
    await expect(persistence.saveSessions()).resolves.toBeUndefined();
    expect(logs.lines).toContainEqual(expect.objectContaining({ level: 50, msg: 'sessions could not be saved; they are lost with this process' }));
  });
});

describe('the session file and the subscribe ACL', () => {
  const publish = (topic: string, payload: string, brokerCounter: number) => ({ topic, payload: Buffer.from(payload), qos: 1, retain: false, brokerId: 'old', brokerCounter });
  const own = { topic: 'sensors/dev-a/+', qos: 1 };
  const foreign = { topic: 'sensors/dev-b/#', qos: 1 };
  const ownMessage = publish('sensors/dev-a/cmd', 'own', 1);
  const foreignMessage = publish('sensors/dev-b/telemetry', 'foreign', 2);
  const session = (clientId: string, owner?: Subscriber) => ({ clientId, ...(owner ? { owner } : {}), subscriptions: [own, foreign], outgoing: [ownMessage, foreignMessage] });

  const cases: [string, SavedSessions['sessions'][number], { topics: string[]; outgoing: string[] }][] = [
    ['a device\'s session, saved with its owner', session('dev-a', { kind: 'device', deviceId: 'dev-a' }), { topics: [own.topic], outgoing: ['own'] }],
    ['a device\'s session saved by an older broker (no owner): checked against the device of its client id', session('dev-a'), { topics: [own.topic], outgoing: ['own'] }],
    ['a session owned by display', session('tool', { kind: 'service', service: 'display' }), { topics: [], outgoing: [] }],
    ['a session owned by admin', session('tool', { kind: 'service', service: 'admin' }), { topics: [own.topic, foreign.topic], outgoing: ['own', 'foreign'] }],
    ['a service\'s session saved by an older broker: kept whole until its client logs in', session('tool'), { topics: [own.topic, foreign.topic], outgoing: ['own', 'foreign'] }],
  ];
  for (const [name, saved, expected] of cases) {
    it(`reads back ${name}`, async () => {
      await saveSessions(file, { retained: [], sessions: [saved] });
      const logs = captureLogger();
      const persistence = await openPersistence({ dataDir: dir.path, brokerWal: false }, logs.logger, options());
      const restored = memoryOf(persistence).exportSessions().sessions;
      expect(restored.flatMap((s) => s.subscriptions.map((x) => x.topic))).toEqual(expected.topics);
      expect(restored.flatMap((s) => s.outgoing.map((o) => o.payload.toString()))).toEqual(expected.outgoing);
      const dropped = saved.subscriptions.length - expected.topics.length;
      if (dropped > 0) expect(logs.lines).toContainEqual(expect.objectContaining({ level: 40, filters: dropped }));
    });
  }

  it('saves each session with the principal its filters were granted to, and only what it was granted', async () => {
    const sessions = guard({ 'dev-a': { kind: 'device', deviceId: 'dev-a' }, tool: { kind: 'service', service: 'display' } });
    const persistence = await openPersistence({ dataDir: dir.path, brokerWal: false }, captureLogger().logger, options(sessions));
    const store = memoryOf(persistence);
    // What aedes 1.2 does for a SUBSCRIBE of a persistent session: the whole packet, refused filters included.
    await store.addSubscriptions({ id: 'dev-a' }, [own, foreign]);
    await store.addSubscriptions({ id: 'tool' }, [{ topic: 'pipeline/#', qos: 1 }, { topic: 'sensors/+/telemetry', qos: 1 }]);
    // A client nobody logged in as stores nothing.
    await store.addSubscriptions({ id: 'stranger' }, [{ topic: '#', qos: 1 }]);
    await persistence.saveSessions();
    const written = JSON.parse(await readFile(file, 'utf8')) as { sessions: { clientId: string; owner: unknown; subscriptions: { topic: string }[] }[] };
    expect(written.sessions.map((s) => [s.clientId, s.owner, s.subscriptions.map((x) => x.topic)])).toEqual([
      ['dev-a', { kind: 'device', deviceId: 'dev-a' }, ['sensors/dev-a/+']],
      ['tool', { kind: 'service', service: 'display' }, ['pipeline/#']],
    ]);
  });
});
