/**
 * Where the broker keeps sessions, QoS 1 queues and retained messages, chosen once at start:
 *   - with a Redis URL, in Redis, with messages crossing brokers on its emitter, so several broker
 *     processes serve one fleet (broker/scale-out.ts);
 *   - otherwise in memory (broker/indexed-persistence.ts), with every change written to the session
 *     log under <data-dir>/broker/log/ and fsynced before aedes goes on (broker/session-log.ts), so a
 *     broker killed at any moment starts again with all it held. With the log switched off
 *     (SENSORPIPE_BROKER_WAL=off) they are saved only at a graceful stop, to
 *     <data-dir>/broker/sessions.json (broker/session-file.ts); a file left by such a stop is read
 *     either way.
 * Either way, the sessions' filters pass the session guard (broker/session-guard.ts) as they are stored,
 * restored, saved and read back.
 */
import { rename } from 'node:fs/promises';
import type { AedesOptions } from 'aedes';
import type { Logger } from '../core/logger.ts';
import type { Subscriber } from './acl.ts';
import { createIndexedMemoryPersistenceAsync, type IndexedMemoryPersistenceAsync, type PersistenceJournal } from './indexed-persistence.ts';
import { createScaleOut } from './scale-out.ts';
import type { SessionGuard } from './session-guard.ts';
import { saveSessions, sessionFilePath, takeSessions, type SavedSessions } from './session-file.ts';
import { logDirOf, records, replaySessionLog, SessionLog, SessionLogUnreadable, type ReplayResult, type SessionLogStats } from './session-log.ts';

export interface BrokerPersistence {
  kind: 'memory' | 'redis';
  /** To spread into aedes' options. */
  aedesOptions: Pick<AedesOptions, 'mq' | 'persistence'>;
  /** Messages queued for a client and not yet acknowledged by it (0 with Redis: not counted here). */
  queuedFor(clientId: string): number;
  /** Called after a queued message is acknowledged (memory only). */
  onCleared(listener: () => void): void;
  /** Client ids of the sessions restored at start. */
  restored: string[];
  /** The session log's counts, when there is one. */
  logStats: SessionLogStats | undefined;
  /** Settles once everything written down so far is durable (at once without a session log). */
  synced(): Promise<void>;
  /** Once aedes has closed: makes what a memory persistence holds durable for the next start (nothing with Redis). */
  saveSessions(): Promise<void>;
  /** Last: lets go of Redis (nothing in memory). */
  close(): Promise<void>;
}

const queued = (saved: SavedSessions): number => saved.sessions.reduce((n, s) => n + s.outgoing.length, 0);

export interface PersistenceOptions {
  sessions: SessionGuard;
  /** The device whose id is `clientId`, if any: owner of a saved session that names none. */
  deviceOwner(clientId: string): Subscriber | undefined;
}

export async function openPersistence(config: { redisUrl?: string | undefined; dataDir: string; brokerWal: boolean }, logger: Logger, options: PersistenceOptions): Promise<BrokerPersistence> {
  if (config.redisUrl !== undefined) {
    const scaleOut = createScaleOut(config.redisUrl, (err, part) => logger.error({ err: err.message, part }, 'Redis connection error (scale-out); reconnecting'));
    options.sessions.install(scaleOut.persistence);
    return {
      kind: 'redis',
      aedesOptions: { mq: scaleOut.mq, persistence: scaleOut.persistence },
      queuedFor: () => 0,
      onCleared: () => {},
      restored: [],
      logStats: undefined,
      // Redis confirms each write before aedes goes on (inside its publish).
      synced: () => Promise.resolve(),
      saveSessions: async () => {},
      close: () => scaleOut.close(),
    };
  }
  const file = sessionFilePath(config.dataDir);
  const log = logger.child({ file });
  // aedes' stock memory persistence scans arrays per PUBACK; a backlogged persistent session (ingest) stalls it.
  const memory: IndexedMemoryPersistenceAsync = createIndexedMemoryPersistenceAsync();
  const logDir = logDirOf(config.dataDir);
  // What the log holds (everything the last broker had, however it stopped), and what a graceful stop
  // without the log saved: ingest's session and its queue, so that telemetry devices send before ingest
  // is back is queued for it, not acknowledged and dropped.
  const replayed = config.brokerWal ? await replayOrSetAside(logDir, logger) : undefined;
  if (replayed !== undefined && replayed.saved !== undefined) {
    logger.child({ dir: logDir }).info({ generation: replayed.generation, records: replayed.records, tornBytes: replayed.tornBytes }, 'session log replayed');
  }
  const fromFile = await takeSessions(file).catch((err: unknown) => {
    log.error({ err: (err as Error).message }, 'saved sessions could not be read; starting without them');
    return undefined;
  });
  const restored: string[] = [];
  for (const saved of [replayed?.saved, fromFile]) {
    if (saved === undefined) continue;
    const checked = options.sessions.checkSaved(saved, options.deviceOwner);
    if (checked.droppedFilters + checked.droppedMessages > 0) {
      log.warn({ filters: checked.droppedFilters, messages: checked.droppedMessages }, 'saved sessions held filters or messages their owners may not have; left out');
    }
    await memory.importSessions(checked.sessions);
    restored.push(...checked.sessions.sessions.map((s) => s.clientId));
    log.info({ sessions: saved.sessions.length, queued: queued(checked.sessions), retained: saved.retained.length }, 'sessions restored from the last stop');
  }
  options.sessions.install(memory); // after the import, which stores through the unguarded methods
  const withOwners = (): SavedSessions => {
    const exported = memory.exportSessions();
    return { ...exported, sessions: exported.sessions.map((s) => ({ ...s, owner: options.sessions.ownerOf(s.clientId) })) };
  };
  const sessionLog = replayed === undefined ? undefined : await SessionLog.start(logDir, replayed.generation, withOwners);
  if (sessionLog !== undefined) memory.journal = journalOf(sessionLog, options.sessions);
  const clearedListeners: (() => void)[] = [];
  memory.onCleared = () => {
    for (const listener of clearedListeners) listener();
  };
  return {
    kind: 'memory',
    aedesOptions: { persistence: memory as AedesOptions['persistence'] },
    queuedFor: (clientId) => memory.queuedFor(clientId),
    onCleared: (listener) => clearedListeners.push(listener),
    restored,
    logStats: sessionLog?.stats,
    synced: () => sessionLog?.synced() ?? Promise.resolve(),
    async saveSessions() {
      if (sessionLog !== undefined) {
        await sessionLog.close().then(
          () => log.info('session log closed'),
          (err: unknown) => log.error({ err: (err as Error).message }, 'the session log could not be closed cleanly; the next start replays what reached the disk'),
        );
        return;
      }
      const toSave = withOwners();
      await saveSessions(file, toSave).then(
        () => log.info({ sessions: toSave.sessions.length, queued: queued(toSave) }, 'sessions saved for the next start'),
        (err: unknown) => log.error({ err: (err as Error).message }, 'sessions could not be saved; they are lost with this process'),
      );
    },
    close: async () => {},
  };
}

/**
 * The log's state, or, for a log this broker cannot read (another format), none: the log is moved aside
 * whole to log.unreadable-<time>, kept for an operator or a broker that reads it, and the error says so.
 */
async function replayOrSetAside(logDir: string, logger: Logger): Promise<ReplayResult> {
  try {
    return await replaySessionLog(logDir);
  } catch (err) {
    if (!(err instanceof SessionLogUnreadable)) throw err;
    const aside = `${logDir}.unreadable-${Date.now()}`;
    await rename(logDir, aside);
    logger.child({ dir: logDir }).error({ err: err.message, movedTo: aside }, 'session log unreadable; moved aside, starting without it');
    return await replaySessionLog(logDir);
  }
}

/** Every change to the memory persistence, into the session log; each owner as the session guard knows it. */
function journalOf(log: SessionLog, sessions: SessionGuard): PersistenceJournal {
  return {
    subscribed: (clientId, subs) => log.append(records.subscribe(clientId, subs, sessions.ownerOf(clientId)), true),
    unsubscribed: (clientId, topics) => log.append(records.unsubscribe(clientId, topics), true),
    cleaned: (clientId) => log.append(records.clean(clientId), true),
    retained: (packet) => log.append(records.retain(packet), false),
    enqueued: (clientIds, packet) => log.append(records.enqueue(clientIds, packet), false),
    cleared: (clientId, packet) => log.append(records.clear(clientId, packet), false),
  };
}
