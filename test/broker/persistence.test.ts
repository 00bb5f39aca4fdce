/**
 * The broker's persistence choice (broker/persistence.ts) without Redis: the session file is restored at
 * start and consumed, a bad one is moved aside and the broker starts without it, and what is held is
 * saved at stop (a failed save is logged, not thrown). Redis is tested in scale-out.test.ts.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { IndexedMemoryPersistenceAsync, SessionsExport } from '../../broker/indexed-persistence.ts';
import { openPersistence, type BrokerPersistence } from '../../broker/persistence.ts';
import { saveSessions, sessionFilePath, takeSessions } from '../../broker/session-file.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { captureLogger } from './helpers.ts';

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
    const persistence = await openPersistence({ dataDir: dir.path }, logs.logger);
    expect(persistence.kind).toBe('memory');
    expect(persistence.aedesOptions.mq).toBeUndefined();
    expect(memoryOf(persistence).exportSessions()).toEqual({ retained: [], sessions: [] });
    expect(logs.lines.filter((l) => (l.level as number) >= 40)).toEqual([]);
  });

  it('restores the session file and removes it', async () => {
    await saveSessions(file, saved);
    const logs = captureLogger();
    const persistence = await openPersistence({ dataDir: dir.path }, logs.logger);
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
      const persistence = await openPersistence({ dataDir: dir.path }, logs.logger);
      expect(memoryOf(persistence).exportSessions()).toEqual({ retained: [], sessions: [] });
      expect(existsSync(file)).toBe(false);
      expect(await readFile(`${file}.unreadable`, 'utf8')).toBe(text);
      expect(logs.lines).toContainEqual(expect.objectContaining({ level: 50, msg: 'saved sessions could not be read; starting without them', file }));
    });
  }

  it('saves what it holds for the next start', async () => {
    await saveSessions(file, saved);
    const persistence = await openPersistence({ dataDir: dir.path }, captureLogger().logger);
    expect(existsSync(file)).toBe(false);
    await persistence.saveSessions();
    await persistence.close();
    const again = await takeSessions(file);
    expect(again && comparable(again)).toEqual(comparable(saved));
  });

  it('logs a save that fails, and does not throw', async () => {
    // The data folder is a file: nothing can be written under it.
    const blocked = join(dir.path, 'not-a-folder');
    await writeFile(blocked, '');
    const logs = captureLogger();
    const persistence = await openPersistence({ dataDir: blocked }, logs.logger);
    await expect(persistence.saveSessions()).resolves.toBeUndefined();
    expect(logs.lines).toContainEqual(expect.objectContaining({ level: 50, msg: 'sessions could not be saved; they are lost with this process' }));
  });
});
