/**
 * Where the broker keeps sessions, QoS 1 queues and retained messages, chosen once at start:
 *   - with a Redis URL, in Redis, with messages crossing brokers on its emitter, so several broker
 *     processes serve one fleet (broker/scale-out.ts);
 *   - otherwise in memory (broker/indexed-persistence.ts), saved at a graceful stop to
 *     <data-dir>/broker/sessions.json and restored from it at the next start (broker/session-file.ts).
 * Either way, the sessions' filters pass the session guard (broker/session-guard.ts) as they are stored,
 * restored, saved and read back.
 */
import type { AedesOptions } from 'aedes';
import type { Logger } from '../core/logger.ts';
import type { Subscriber } from './acl.ts';
import { createIndexedMemoryPersistenceAsync, type IndexedMemoryPersistenceAsync } from './indexed-persistence.ts';
import { createScaleOut } from './scale-out.ts';
import type { SessionGuard } from './session-guard.ts';
import { saveSessions, sessionFilePath, takeSessions, type SavedSessions } from './session-file.ts';

export interface BrokerPersistence {
  kind: 'memory' | 'redis';
  /** To spread into aedes' options. */
  aedesOptions: Pick<AedesOptions, 'mq' | 'persistence'>;
  /** Once aedes has closed: writes what a memory persistence holds to the session file (nothing with Redis). */
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

export async function openPersistence(config: { redisUrl?: string | undefined; dataDir: string }, logger: Logger, options: PersistenceOptions): Promise<BrokerPersistence> {
  if (config.redisUrl !== undefined) {
    const scaleOut = createScaleOut(config.redisUrl);
    options.sessions.install(scaleOut.persistence);
    return {
      kind: 'redis',
      aedesOptions: { mq: scaleOut.mq, persistence: scaleOut.persistence },
      saveSessions: async () => {},
      close: () => scaleOut.close(),
    };
  }
  const file = sessionFilePath(config.dataDir);
  const log = logger.child({ file });
  // aedes' stock memory persistence scans arrays per PUBACK; a backlogged persistent session (ingest) stalls it.
  const memory: IndexedMemoryPersistenceAsync = createIndexedMemoryPersistenceAsync();
  // What the last graceful stop saved: ingest's session and its queue, so that telemetry devices send
  // before ingest is back is queued for it, not acknowledged and dropped.
  const saved = await takeSessions(file).catch((err: unknown) => {
    log.error({ err: (err as Error).message }, 'saved sessions could not be read; starting without them');
    return undefined;
  });
  if (saved !== undefined) {
    const checked = options.sessions.checkSaved(saved, options.deviceOwner);
    if (checked.droppedFilters + checked.droppedMessages > 0) {
      log.warn({ filters: checked.droppedFilters, messages: checked.droppedMessages }, 'saved sessions held filters or messages their owners may not have; left out');
    }
    await memory.importSessions(checked.sessions);
    log.info({ sessions: saved.sessions.length, queued: queued(checked.sessions), retained: saved.retained.length }, 'sessions restored from the last stop');
  }
  options.sessions.install(memory); // after the import, which stores through the unguarded methods
  return {
    kind: 'memory',
    aedesOptions: { persistence: memory as AedesOptions['persistence'] },
    async saveSessions() {
      const exported = memory.exportSessions();
      const toSave: SavedSessions = { ...exported, sessions: exported.sessions.map((s) => ({ ...s, owner: options.sessions.ownerOf(s.clientId) })) };
      await saveSessions(file, toSave).then(
        () => log.info({ sessions: toSave.sessions.length, queued: queued(toSave) }, 'sessions saved for the next start'),
        (err: unknown) => log.error({ err: (err as Error).message }, 'sessions could not be saved; they are lost with this process'),
      );
    },
    close: async () => {},
  };
}
