/**
 * Where the broker keeps sessions, QoS 1 queues and retained messages, chosen once at start:
 *   - with a Redis URL, in Redis, with messages crossing brokers on its emitter, so several broker
 *     processes serve one fleet (broker/scale-out.ts);
 *   - otherwise in memory (broker/indexed-persistence.ts), saved at a graceful stop to
 *     <data-dir>/broker/sessions.json and restored from it at the next start (broker/session-file.ts).
 */
import type { AedesOptions } from 'aedes';
import type { Logger } from '../core/logger.ts';
import { createIndexedMemoryPersistenceAsync, type IndexedMemoryPersistenceAsync, type SessionsExport } from './indexed-persistence.ts';
import { createScaleOut } from './scale-out.ts';
import { saveSessions, sessionFilePath, takeSessions } from './session-file.ts';

export interface BrokerPersistence {
  kind: 'memory' | 'redis';
  /** To spread into aedes' options. */
  aedesOptions: Pick<AedesOptions, 'mq' | 'persistence'>;
  /** Once aedes has closed: writes what a memory persistence holds to the session file (nothing with Redis). */
  saveSessions(): Promise<void>;
  /** Last: lets go of Redis (nothing in memory). */
  close(): Promise<void>;
}

const queued = (saved: SessionsExport): number => saved.sessions.reduce((n, s) => n + s.outgoing.length, 0);

export async function openPersistence(config: { redisUrl?: string | undefined; dataDir: string }, logger: Logger): Promise<BrokerPersistence> {
  if (config.redisUrl !== undefined) {
    const scaleOut = createScaleOut(config.redisUrl);
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
    await memory.importSessions(saved);
    log.info({ sessions: saved.sessions.length, queued: queued(saved), retained: saved.retained.length }, 'sessions restored from the last stop');
  }
  return {
    kind: 'memory',
    aedesOptions: { persistence: memory as AedesOptions['persistence'] },
    async saveSessions() {
      const toSave = memory.exportSessions();
      await saveSessions(file, toSave).then(
        () => log.info({ sessions: toSave.sessions.length, queued: queued(toSave) }, 'sessions saved for the next start'),
        (err: unknown) => log.error({ err: (err as Error).message }, 'sessions could not be saved; they are lost with this process'),
      );
    },
    close: async () => {},
  };
}
