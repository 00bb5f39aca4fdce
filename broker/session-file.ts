/**
 * The in-memory broker's sessions across a graceful restart: on close, the persistent sessions
 * (ingest's subscription and the QoS 1 messages queued for it) and the retained messages are written
 * to <data-dir>/broker/sessions.json; the next start restores them before it takes a connection, and
 * removes the file, so a later crash cannot bring back a stale copy. A broker that crashes loses them,
 * as before: Redis persistence (SENSORPIPE_REDIS_URL) is the durable option.
 *
 * Each session is saved with its owner, the principal its filters were granted to, so that they are
 * checked against that principal's ACL as they are read back (broker/session-guard.ts). A file from an
 * older broker has no owners; it is read all the same.
 */
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ServiceName, Subscriber } from './acl.ts';
import type { SessionsExport, StoredPublish } from './indexed-persistence.ts';

const FILE_VERSION = 1;

/** An export of the memory persistence, each session with its owner when known. */
export interface SavedSessions {
  retained: StoredPublish[];
  sessions: (SessionsExport['sessions'][number] & { owner?: Subscriber | undefined })[];
}

interface StoredPublishJson extends Omit<StoredPublish, 'payload'> {
  payload: string;
}

interface SessionsFile {
  version: typeof FILE_VERSION;
  savedAt: number;
  retained: StoredPublishJson[];
  sessions: { clientId: string; owner?: unknown; subscriptions: SessionsExport['sessions'][number]['subscriptions']; outgoing: StoredPublishJson[] }[];
}

const SERVICES: readonly ServiceName[] = ['ingest', 'display', 'alerts', 'admin'];

/** An owner as saved, or undefined for anything else (a missing or malformed one). */
export function ownerFromJson(value: unknown): Subscriber | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const owner = value as Record<string, unknown>;
  if (owner.kind === 'device' && typeof owner.deviceId === 'string') return { kind: 'device', deviceId: owner.deviceId };
  if (owner.kind === 'service' && SERVICES.includes(owner.service as ServiceName)) return { kind: 'service', service: owner.service as ServiceName };
  return undefined;
}

/** Only what the ACL looks at (never a device's verifier). */
export function ownerToJson(owner: Subscriber | undefined): Subscriber | undefined {
  if (owner === undefined) return undefined;
  return owner.kind === 'device' ? { kind: 'device', deviceId: owner.deviceId } : { kind: 'service', service: owner.service };
}

export function sessionFilePath(dataDir: string): string {
  return join(dataDir, 'broker', 'sessions.json');
}

const toJson = (p: StoredPublish): StoredPublishJson => ({ ...p, payload: p.payload.toString('base64') });
const fromJson = (p: StoredPublishJson): StoredPublish => ({ ...p, payload: Buffer.from(p.payload, 'base64') });

/** Writes the export atomically (temporary file, fsync, rename). */
export async function saveSessions(path: string, saved: SavedSessions): Promise<void> {
  const file: SessionsFile = {
    version: FILE_VERSION,
    savedAt: Date.now(),
    retained: saved.retained.map(toJson),
    sessions: saved.sessions.map((s) => ({ clientId: s.clientId, owner: ownerToJson(s.owner), subscriptions: s.subscriptions, outgoing: s.outgoing.map(toJson) })),
  };
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.tmp`;
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(JSON.stringify(file));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
}

/** Reads and removes the saved sessions; undefined when there are none. An unreadable file is moved aside and thrown about. */
export async function takeSessions(path: string): Promise<SavedSessions | undefined> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (text === undefined) return undefined;
  let file: SessionsFile;
  try {
    file = JSON.parse(text) as SessionsFile;
    if (file.version !== FILE_VERSION) throw new Error(`unknown version ${String(file.version)}`);
  } catch (err) {
    // Kept aside for a look, never read again.
    await rename(path, `${path}.unreadable`);
    throw new Error(`${path}: ${(err as Error).message} (moved to ${path}.unreadable)`);
  }
  await rm(path);
  return {
    retained: file.retained.map(fromJson),
    sessions: file.sessions.map((s) => ({ clientId: s.clientId, owner: ownerFromJson(s.owner), subscriptions: s.subscriptions, outgoing: s.outgoing.map(fromJson) })),
  };
}
